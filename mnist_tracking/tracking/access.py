"""Who a command is on a tracking server, and whether it may do what it is about to.

Credentials come from $MLFLOW_TRACKING_USERNAME and $MLFLOW_TRACKING_PASSWORD (or MLflow's ~/.mlflow/credentials),
or from the URI (`https://user:password@host`), which this process turns into those variables: every process it
starts inherits them, and the URI that runs, logs and messages name has no password. An `https://` server's
certificate is checked as MLflow checks it ($MLFLOW_TRACKING_SERVER_CERT_PATH: the CA bundle). On a server with
MLflow's basic-auth app, the user's permission on the experiment (and on the registered model a sweep registers
into) is read before anything trains; a metrics write it refuses mid-run stops training (`raise_refusal`).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
from mlflow.environment_variables import (
    MLFLOW_TRACKING_CLIENT_CERT_PATH,
    MLFLOW_TRACKING_INSECURE_TLS,
    MLFLOW_TRACKING_PASSWORD,
    MLFLOW_TRACKING_SERVER_CERT_PATH,
    MLFLOW_TRACKING_USERNAME,
)
from mlflow.utils.credentials import read_mlflow_creds

from mnist_tracking.errors import ConfigError, refused
from mnist_tracking.runtime.redaction import redact_text

log = logging.getLogger(__name__)

CURRENT_USER = "/api/2.0/mlflow/users/current"  # any signed-in user may call it; 404 where there is no auth app
USER_PERMISSION = "/api/3.0/mlflow/users/permissions/get"  # a user's own permission on one resource
WRITES = ("EDIT", "MANAGE")  # the permissions that let a user create runs in an experiment, or versions of a model


def is_server(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def adopt_credentials(tracking_uri: str) -> str:
    """`tracking_uri` less its user info; a user (and password) in it become this process's
    $MLFLOW_TRACKING_USERNAME (and $MLFLOW_TRACKING_PASSWORD), which MLflow sends and child processes inherit."""
    if not is_server(tracking_uri):
        return tracking_uri
    parts = urlsplit(tracking_uri)
    if "@" not in parts.netloc:
        return tracking_uri
    if parts.username:
        os.environ[MLFLOW_TRACKING_USERNAME.name] = unquote(parts.username)
    if parts.password is not None:
        os.environ[MLFLOW_TRACKING_PASSWORD.name] = unquote(parts.password)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def request_options() -> dict[str, Any]:
    """`requests` options for the project's own calls to a tracking server, as MLflow's client would send them:
    the CA bundle or no check (MLflow's TLS variables), a client certificate, basic-auth credentials."""
    ca, insecure = MLFLOW_TRACKING_SERVER_CERT_PATH.get(), MLFLOW_TRACKING_INSECURE_TLS.get()
    if ca and insecure:
        raise ConfigError(
            f"Both {MLFLOW_TRACKING_SERVER_CERT_PATH.name} and {MLFLOW_TRACKING_INSECURE_TLS.name} are set: "
            "keep the CA bundle, unset the other."
        )
    if ca and not Path(ca).is_file():
        raise ConfigError(
            f"{MLFLOW_TRACKING_SERVER_CERT_PATH.name}={ca!r} is no file: it names the CA certificate (PEM) that "
            "signed the tracking server's certificate."
        )
    options: dict[str, Any] = {"verify": False if insecure else (ca or True)}
    if client_cert := MLFLOW_TRACKING_CLIENT_CERT_PATH.get():
        options["cert"] = client_cert
    creds = read_mlflow_creds()
    if creds.username and creds.password:
        options["auth"] = (creds.username, creds.password)
    return options


def get(tracking_uri: str, path: str, timeout_s: float = 10.0, **params: str) -> requests.Response:
    """GET `path` on the server, with `request_options`."""
    return requests.get(f"{tracking_uri.rstrip('/')}{path}", params=params, timeout=timeout_s, **request_options())


def tls_failure(tracking_uri: str, exc: requests.exceptions.SSLError) -> ConfigError:
    """What to say when a server's certificate is refused: which server, which CA, what to set."""
    ca = MLFLOW_TRACKING_SERVER_CERT_PATH.get()
    reason = redact_text(str(exc.args[0] if exc.args else exc))[-300:]
    given = f"the CA in {MLFLOW_TRACKING_SERVER_CERT_PATH.name}={ca}" if ca else "the system's CAs"
    return ConfigError(
        f"The certificate of the tracking server {redact_text(tracking_uri)} is not signed by {given} ({reason}). "
        f"Set {MLFLOW_TRACKING_SERVER_CERT_PATH.name} to the certificate (PEM) of the CA that signed it."
    )


def authenticate(tracking_uri: str) -> dict[str, Any] | None:
    """The signed-in user (`username`, `is_admin`) on a server with MLflow's basic-auth app; None: no such app.

    ConfigError, naming the user and the server (never the password), when the server refuses the credentials or
    needs some and none are set.
    """
    if not is_server(tracking_uri):
        return None
    server = redact_text(tracking_uri)
    try:
        response = get(tracking_uri, CURRENT_USER)
    except requests.exceptions.SSLError as exc:
        raise tls_failure(tracking_uri, exc) from None
    except requests.RequestException as exc:
        raise ConfigError(f"The tracking server {server} did not answer ({type(exc).__name__}).") from None
    if response.status_code == 401:
        creds = read_mlflow_creds()
        if not (creds.username and creds.password):
            raise ConfigError(
                f"The tracking server {server} needs a user and password, and none is set: set "
                f"{MLFLOW_TRACKING_USERNAME.name} and {MLFLOW_TRACKING_PASSWORD.name}, or give them in the URI "
                "(https://USER:PASSWORD@host)."
            )
        raise ConfigError(
            f"The tracking server {server} refused user {creds.username!r} (HTTP 401): wrong password, or no such "
            f"user. Check {MLFLOW_TRACKING_PASSWORD.name} (or the password in the URI), or ask the server's admin."
        )
    if not response.ok:  # 404: a server without the auth app, which lets anyone do anything
        return None
    try:
        return dict(response.json()["user"])
    except (ValueError, KeyError, TypeError):  # not MLflow's auth app answering: nothing to check
        return None


def require_write(
    tracking_uri: str, user: dict[str, Any] | None, kind: str, resource_id: str, shown: str, hint: str
) -> None:
    """ConfigError unless `user` may write to the resource (EDIT or MANAGE): an "experiment" by id, or a "registered
    model" by name (`kind`; the API writes it with an underscore). `shown` names it in the message, `hint` ends it.
    Nothing to check without the auth app, or for an admin."""
    if user is None or user.get("is_admin"):
        return
    try:
        response = get(
            tracking_uri,
            USER_PERMISSION,
            username=user["username"],
            resource_type=kind.replace(" ", "_"),
            resource_id=resource_id,
        )
    except requests.RequestException as exc:
        log.warning("Could not read %s's permission at %s (%s)", user["username"], redact_text(tracking_uri), exc)
        return
    if not response.ok:  # a server without this API: the first write it refuses says so
        log.warning(
            "Could not read %s's permission at %s (HTTP %s): a missing permission shows when a write is refused",
            user["username"],
            redact_text(tracking_uri),
            response.status_code,
        )
        return
    permission = response.json().get("permission", "NO_PERMISSIONS")
    if permission not in WRITES:
        raise ConfigError(
            f"User {user['username']!r} has {permission} on {kind} {shown!r} at "
            f"{redact_text(tracking_uri)}; this command needs EDIT. Ask its owner or the server's admin for EDIT, "
            f"or {hint}."
        )


def require_model_write(tracking_uri: str, name: str) -> None:
    """ConfigError unless the signed-in user may add versions to registered model `name` (EDIT), when it exists;
    creating a missing one is the server's `default_permission` to give, and is tried when the sweep ends."""
    user = authenticate(tracking_uri)
    if user is None or user.get("is_admin"):
        return
    try:
        found = get(tracking_uri, "/api/2.0/mlflow/registered-models/get", name=name)
    except requests.RequestException as exc:
        log.warning("Could not read registered model %r at %s (%s)", name, redact_text(tracking_uri), exc)
        return
    if found.status_code == 404:
        return
    require_write(
        tracking_uri, user, "registered model", name, name, "register elsewhere (sweep.registered_model_name)"
    )


def raise_refusal(pending: list[Future]) -> None:
    """Drops the done metrics writes from the front of `pending`; raises one the server refused (401/403: a permission
    taken away), so that training stops with the reason. Other failures stay for whoever waits for them (the
    callback's `close`); a write that waits for a silent server is waited for."""
    while pending and pending[0].done():
        if refused(exc := pending[0].exception()):
            raise exc
        if exc is not None:
            return
        pending.pop(0)
