"""Running the dev and prod Pulumi stacks through the Automation API: preview, up, destroy and outputs.

State lives in a local file backend inside the repository (``.pulumi/``, git-ignored) unless
``PULUMI_BACKEND_URL`` says otherwise, encrypted with a passphrase. Pulumi itself is imported only
inside the functions that run it, so listing tasks stays fast.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.errors import CommandFailed, ConfigError, Refused, TetherError, ToolMissing
from tether.paths import project_root, runtime_dir, stacks_dir
from tether.secrets import MASK, generate_password, mask_text

if TYPE_CHECKING:
    from pulumi.automation import Stack

STACKS = ("dev", "prod")
PROJECTS = {"dev": "tether-dev", "prod": "tether-prod"}
PULUMI_INSTALL_HINT = ("install the Pulumi CLI with `curl -fsSL https://get.pulumi.com | sh` and open a new "
                       "shell (it puts `pulumi` in ~/.pulumi/bin).")
GCLOUD_LOGIN = "gcloud auth application-default login"
METADATA_CREDENTIALS_ENV = "TETHER_USE_METADATA_CREDENTIALS"
PASSPHRASE_FILE_NAME = "pulumi-passphrase"  # noqa: S105 - a file name, not a secret
PASSPHRASE_ENV = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")
# Variables the Google provider reads credentials from, besides the application-default file.
_CREDENTIAL_VARIABLES = ("GOOGLE_CREDENTIALS", "GOOGLE_CLOUD_KEYFILE_JSON", "GCLOUD_KEYFILE_JSON",
                         "GOOGLE_OAUTH_ACCESS_TOKEN")
# Inside an output Pulumi marks secret, these keys hold the secret part (the rest is shown).
_SENSITIVE_KEY = re.compile(r"pass(word|phrase)?|secret|token|auth|private.?key|credential", re.IGNORECASE)
_PROBE_TIMEOUT = 20


# --- probes -------------------------------------------------------------------------------------

def _answers(argv: list[str]) -> bool:
    if shutil.which(argv[0]) is None:
        return False
    try:
        completed = subprocess.run(argv, capture_output=True, timeout=_PROBE_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return completed.returncode == 0


def pulumi_available() -> bool:
    """True when the Pulumi CLI is on PATH and answers ``pulumi version``."""
    return _answers(["pulumi", "version"])


def docker_available() -> bool:
    """True when the docker CLI is on PATH and its engine answers ``docker info``."""
    return _answers(["docker", "info"])


def gcp_credentials_source(env: Mapping[str, str], home: Path) -> str | None:
    """Where Google credentials would come from for the Pulumi Google provider, or None if nowhere.

    The metadata server (GCE, Cloud Build, GKE) cannot be probed offline: ``TETHER_USE_METADATA_CREDENTIALS=1``
    says it is there.
    """
    for variable in _CREDENTIAL_VARIABLES:
        if env.get(variable):
            return variable
    explicit = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if explicit and Path(explicit).is_file():
        return explicit
    config_dir = Path(env["CLOUDSDK_CONFIG"]) if env.get("CLOUDSDK_CONFIG") else home / ".config" / "gcloud"
    adc = config_dir / "application_default_credentials.json"
    if adc.is_file():
        return str(adc)
    if env.get(METADATA_CREDENTIALS_ENV, "").strip().lower() in {"1", "true", "yes"}:
        return "the metadata server"
    return None


# --- where state lives and how it is encrypted --------------------------------------------------

def check_stack_name(stack: str | None) -> str:
    """``stack`` if it names one of the project's stacks, else a ``ConfigError`` saying which exist."""
    name = (stack or "").strip()
    if not name:
        raise ConfigError("No --stack given: use --stack dev or --stack prod.")
    if name not in STACKS:
        raise ConfigError(f"There is no stack {name!r}: choose --stack dev (local Docker) or --stack prod (Cloud SQL).")
    return name


def stack_dir(stack: str) -> Path:
    return stacks_dir() / stack


def default_backend_url(root: Path) -> str:
    return f"file://{root / '.pulumi'}"


def backend_url(env: Mapping[str, str], root: Path) -> str:
    """``PULUMI_BACKEND_URL`` when set, else the repository's own git-ignored ``.pulumi`` folder."""
    return env.get("PULUMI_BACKEND_URL", "").strip() or default_backend_url(root)


def is_self_managed(url: str) -> bool:
    """True for file://, gs://, s3:// and azblob:// backends, which encrypt secrets with a passphrase."""
    return not url.startswith(("https://", "http://"))


@dataclass(frozen=True)
class Passphrase:
    env: dict[str, str]  # what to add to Pulumi's environment
    generated: Path | None  # set when this call created the passphrase file


def passphrase(env: Mapping[str, str], url: str, runtime: Path) -> Passphrase:
    """The passphrase for a self-managed backend: the user's, or one kept in ``.runtime/`` (mode 0600).

    The file is created once and reused; the team shares it (or sets PULUMI_CONFIG_PASSPHRASE) to
    read each other's state.
    """
    if any(env.get(name) for name in PASSPHRASE_ENV) or not is_self_managed(url):
        return Passphrase({}, None)
    path = runtime / PASSPHRASE_FILE_NAME
    generated = None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(generate_password(48) + "\n")
        generated = path
    return Passphrase({"PULUMI_CONFIG_PASSPHRASE_FILE": str(path)}, generated)


def workspace_env(stack: str) -> dict[str, str]:
    """The environment Pulumi runs in: backend, passphrase, and this interpreter for the program."""
    root = project_root()
    url = backend_url(os.environ, root)
    if url == default_backend_url(root):
        (root / ".pulumi").mkdir(exist_ok=True)
    secret = passphrase(os.environ, url, runtime_dir())
    if secret.generated is not None:
        from tether.console import console

        console().print(f"Generated a Pulumi passphrase in {secret.generated} (mode 0600). It encrypts the "
                        f"{stack} stack's secrets: keep it, and share it with your team (or set "
                        "PULUMI_CONFIG_PASSPHRASE) before anyone else touches this state.")
    interpreter_dir = str(Path(sys.executable).parent)
    return {
        "PULUMI_BACKEND_URL": url,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        # The stack programs and the policy pack import `infra` and the Pulumi SDKs from this project:
        # run them with this interpreter, whichever way Pulumi looks for Python.
        "PULUMI_PYTHON_CMD": sys.executable,
        "PATH": os.pathsep.join([interpreter_dir, os.environ.get("PATH", "")]),
        **secret.env,
    }


# --- readiness ----------------------------------------------------------------------------------

def require_pulumi() -> None:
    if not pulumi_available():
        raise ToolMissing("pulumi", PULUMI_INSTALL_HINT)


def require_gcp_credentials() -> None:
    source = gcp_credentials_source(os.environ, Path.home())
    if source is None:
        raise TetherError(
            "No Google Cloud credentials found for the prod stack. Run `gcloud auth application-default login` "
            "(install gcloud from https://cloud.google.com/sdk/docs/install), or point "
            "GOOGLE_APPLICATION_CREDENTIALS at a service account key; on a GCE VM or Cloud Build set "
            f"{METADATA_CREDENTIALS_ENV}=1.")


def require_docker() -> None:
    if not docker_available():
        raise TetherError("The dev stack's Docker backend needs a running Docker engine, and `docker info` did "
                          "not answer. Start Docker (or install it: https://docs.docker.com/engine/install/), or "
                          "use the native backend: invoke up --backend native.")


def require_prod_project() -> None:
    """The prod stack file names a Google Cloud project and passes every rule of infra/prod/rules.py.

    Checked before Pulumi starts, so a value Google would refuse stops here, before any cloud call.
    """
    from infra.prod.config import load_prod_stack_config

    try:
        load_prod_stack_config(stack_dir("prod") / "Pulumi.prod.yaml")
    except ValueError as error:  # its message names the file, the key, the rule and a value that works
        raise ConfigError(str(error)) from None


def require_ready(stack: str) -> None:
    """Everything a preview or update of ``stack`` needs, checked before Pulumi starts."""
    require_pulumi()
    if stack == "prod":
        require_prod_project()
        require_gcp_credentials()
    else:
        require_docker()


# --- running Pulumi -----------------------------------------------------------------------------

def policy_packs(stack: str) -> list[str]:
    """The local policy packs a stack's previews and updates run (prod: the hardening pack)."""
    pack = project_root() / "policy"
    return [str(pack)] if stack == "prod" and (pack / "PulumiPolicy.yaml").exists() else []


def _print_line(line: str) -> None:
    # Pulumi already shows secrets as [secret]; masking again costs nothing.
    print(mask_text(line), flush=True)


def _open_stack(stack: str, *, create: bool) -> Stack:
    from pulumi import automation as auto

    env = workspace_env(stack)
    options = auto.LocalWorkspaceOptions(
        env_vars=env,
        secrets_provider="passphrase" if is_self_managed(env["PULUMI_BACKEND_URL"]) else None,
    )
    work_dir = str(stack_dir(stack))
    with _pulumi_errors(f"selecting the {stack} stack"):
        try:
            if create:
                return auto.create_or_select_stack(stack, work_dir=work_dir, opts=options)
            return auto.select_stack(stack, work_dir=work_dir, opts=options)
        except auto.StackNotFoundError:
            first = "invoke up" if stack == "dev" else "invoke deploy --stack prod"
            raise ConfigError(f"The {stack} stack has no state in {env['PULUMI_BACKEND_URL']} yet: run `{first}` "
                              "first, or point PULUMI_BACKEND_URL at the backend that holds it.") from None


@contextmanager
def _pulumi_errors(what: str) -> Iterator[None]:
    """Turn Automation API failures into one domain error with the tail of Pulumi's output and a hint."""
    from pulumi import automation as auto

    try:
        yield
    except auto.ConcurrentUpdateError:
        raise TetherError(f"Pulumi ({what}) failed: another update of this stack is running. Wait for it, or "
                          "if it crashed, run `pulumi cancel` in the stack's folder.") from None
    except auto.CommandError as error:
        code, stdout, stderr = command_error_parts(error)
        output = "\n".join(part for part in (stdout, stderr) if part)  # diagnostics go to stdout, the verdict to stderr
        raise CommandFailed(f"Pulumi ({what})", code, output, failure_hint(output)) from None


def command_error_parts(error: BaseException) -> tuple[int, str, str]:
    """Exit code, stdout and stderr out of an Automation API ``CommandError`` (it keeps only their text)."""
    text = str(error)
    code_match = re.search(r"code: (-?\d+)", text)
    stdout, _, stderr = text.partition("\n stderr: ")
    stdout = stdout.split("\n stdout: ", 1)[-1] if "\n stdout: " in stdout else ""
    return (int(code_match.group(1)) if code_match else 1), stdout.strip(), stderr.strip()


def failure_hint(output: str) -> str:
    """What to do about a Pulumi failure, recognised from its output."""
    lowered = output.lower()
    if "could not find default credentials" in lowered or "application default credentials" in lowered:
        return f"Google credentials are missing or expired: run `{GCLOUD_LOGIN}`."
    if "passphrase" in lowered:
        return ("The state's passphrase does not match: set PULUMI_CONFIG_PASSPHRASE (or _FILE) to the team's "
                f"passphrase, or restore .runtime/{PASSPHRASE_FILE_NAME}.")
    if "policy violation" in lowered or "mandatory policy" in lowered:
        return "The prod hardening policy pack refused the change: see the violations above (policy/)."
    return ""


def _changes(summary: Mapping[Any, int] | None) -> dict[str, int]:
    return {getattr(kind, "value", str(kind)): count for kind, count in (summary or {}).items()}


def describe_changes(changes: Mapping[str, int]) -> str:
    """``2 to create, 1 to update`` (unchanged resources left out)."""
    words = {"create": "to create", "update": "to update", "delete": "to delete", "replace": "to replace"}
    parts = [f"{count} {words.get(kind, kind)}" for kind, count in sorted(changes.items())
             if count and kind != "same"]
    return ", ".join(parts) or "no changes"


def has_changes(changes: Mapping[str, int]) -> bool:
    return any(count for kind, count in changes.items() if kind != "same")


def preview(stack: str) -> dict[str, int]:
    """Run ``pulumi preview`` on ``stack`` (dev or prod), streaming its output; return the change counts."""
    name = check_stack_name(stack)
    require_ready(name)
    handle = _open_stack(name, create=True)
    with _pulumi_errors(f"preview of the {name} stack"):
        result = handle.preview(on_output=_print_line, policy_packs=policy_packs(name) or None, color="never")
    return _changes(result.change_summary)


def up(stack: str) -> dict[str, int]:
    """Run ``pulumi up`` on ``stack``, streaming its output; return the change counts.

    It asks nothing: confirming a prod update is the caller's job (see ``tether.tasks.stacks.deploy``).
    """
    name = check_stack_name(stack)
    require_ready(name)
    handle = _open_stack(name, create=True)
    with _pulumi_errors(f"update of the {name} stack"):
        result = handle.up(on_output=_print_line, policy_packs=policy_packs(name) or None, color="never",
                           show_secrets=False)
    return _changes(result.summary.resource_changes)


def destroy(stack: str) -> dict[str, int]:
    """Run ``pulumi destroy`` on the dev stack (prod is never destroyed from here)."""
    name = check_stack_name(stack)
    if name == "prod":
        raise Refused("Refused: tether never destroys the prod stack. Its instance is protected on purpose; "
                      "remove protection by hand in stacks/prod if you really mean it.")
    require_ready(name)
    handle = _open_stack(name, create=False)
    with _pulumi_errors(f"destroy of the {name} stack"):
        result = handle.destroy(on_output=_print_line, color="never", show_secrets=False)
    return _changes(result.summary.resource_changes)


def stack_outputs(stack: str, show_secrets: bool) -> dict[str, Any]:
    """The stack's outputs; values Pulumi marks secret are masked unless ``show_secrets``."""
    name = check_stack_name(stack)
    require_pulumi()
    handle = _open_stack(name, create=False)
    with _pulumi_errors(f"reading the {name} stack's outputs"):
        raw = handle.outputs()
    return display_outputs({key: (value.value, value.secret) for key, value in raw.items()}, show_secrets)


def display_outputs(outputs: Mapping[str, tuple[Any, bool]], show_secrets: bool) -> dict[str, Any]:
    """Outputs as plain values; a secret one is masked: wholly, or where a mapping holds it under a secret key."""
    shown: dict[str, Any] = {}
    for key, (value, secret) in outputs.items():
        shown[key] = value if show_secrets or not secret else _mask_secret_value(value)
    return shown


def _mask_secret_value(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return MASK
    hidden = [str(item) for key, item in value.items() if _SENSITIVE_KEY.search(str(key)) and item]
    masked: dict[str, Any] = {}
    for key, item in value.items():
        if _SENSITIVE_KEY.search(str(key)):
            masked[key] = MASK
        elif isinstance(item, Mapping):
            masked[key] = _mask_secret_value(item)
        elif isinstance(item, str):
            masked[key] = mask_text(item, hidden)  # e.g. a URL that embeds the password
        else:
            masked[key] = item
    return masked

