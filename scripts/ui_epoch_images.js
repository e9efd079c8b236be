// The screenshot docs/images/ui_epoch_images.png: a run's Model metrics tab in the MLflow UI, its image grid card
// of one per-epoch image key enlarged, the image at its first epoch opened at full size, the step slider below.
// scripts/docs_figures.py runs it against an `mlflow server` it started; it needs playwright-core (on NODE_PATH:
// the copy the workplace's ui-check tool installs) and Debian's Chromium.
//
//   NODE_PATH=~/.cache/mnist-ui-check/node_modules node scripts/ui_epoch_images.js \
//     --run-url 'http://127.0.0.1:PORT/#/experiments/1/runs/RUN_ID' --out docs/images/ui_epoch_images.png \
//     [--key validation_sample] [--chromium /usr/bin/chromium] [--timeout-s 180]
//
// Exit 0: the screenshot is written. Exit 1, with what was missing: no file is written.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const args = { key: 'validation_sample', chromium: '/usr/bin/chromium', 'timeout-s': '180' };
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
if (!args['run-url'] || !args.out) {
  console.error('usage: node ui_epoch_images.js --run-url URL --out PNG [--key KEY] [--chromium PATH] [--timeout-s S]');
  process.exit(2);
}
const KEY = args.key;
const step = (what) => console.error(`ui_epoch_images: ${what}`);

async function shoot(page) {
  await page.goto(args['run-url'], { waitUntil: 'domcontentloaded' });
  step('run page: opening the Model metrics tab');
  await page.getByRole('tab', { name: 'Model metrics', exact: true }).click();
  // The tab holds a chart per metric too: the search box leaves only KEY's card.
  await page.locator('input[placeholder="Search metric charts"]').fill(KEY);
  const card = page
    .locator('[data-testid="experiment-view-compare-runs-card"]')
    .filter({ has: page.getByText(KEY, { exact: true }) });
  try {
    await card.locator('img').first().waitFor();
  } catch (e) {
    throw new Error(`no image grid card "${KEY}" with an image on the Model metrics tab (did the run log images?)`);
  }
  step(`enlarging the "${KEY}" card`);
  await card.locator('[data-component-id="fullscreen_button_chartcard"]').click();
  const dialog = page.getByRole('dialog').filter({ has: page.getByRole('heading', { name: KEY }) });
  const thumbnail = dialog.locator('img.rc-image-img').first();
  await thumbnail.waitFor();
  const first = await dialog.locator('input').last().inputValue();
  if (first !== '0') throw new Error(`the enlarged card's slider is at step ${first}, not the first epoch (step 0)`);
  step('opening the image at full size');
  await thumbnail.click();
  const full = page.locator('img.rc-image-preview-img');
  await full.waitFor();
  await page.waitForFunction(
    (img) => img.complete && img.naturalWidth > 0 && img.src.includes('%2Bstep%2B0%2B'),
    await full.elementHandle(),
  );
  await page.mouse.move(1, 1);
  await page.waitForTimeout(1000); // the preview's zoom-in animation
  await page.screenshot({ path: args.out });
  step(`wrote ${args.out}`);
}

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ui-epoch-images-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: args.chromium,
    headless: true,
    viewport: { width: 1200, height: 1500 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  try {
    // The UI's first-visit choices, as ui-check makes them: the model-training sidebar, no assistant panel.
    await browser.addInitScript(() => {
      localStorage.setItem('mlflow.workflowType_v1', '"machine_learning"');
      localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');
      localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');
    });
    const page = browser.pages()[0] || (await browser.newPage());
    page.setDefaultTimeout(60000);
    await shoot(page);
  } finally {
    await browser.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

const watchdog = setTimeout(() => {
  console.error(`ui_epoch_images: FAILED: not done within ${args['timeout-s']} s`);
  process.exit(1);
}, 1000 * +args['timeout-s']);
main().then(
  () => { clearTimeout(watchdog); },
  (e) => {
    console.error(`ui_epoch_images: FAILED: ${e.message.split('\n')[0]}`);
    process.exit(1);
  },
);
