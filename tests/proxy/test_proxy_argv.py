"""The pure side of the proxy: argv for v1 and v2, its environment, version and failure parsing."""

from __future__ import annotations

import pytest

from tether.errors import ConfigError
from tether.proxy_cmd import (
    ProxyOptions,
    classify_failure,
    is_ready,
    listening_inodes,
    major_from_name,
    parse_version_output,
    proxy_argv,
    proxy_env,
    v1_argv,
    v2_argv,
    validate_connection_name,
)

INSTANCE = "my-project:europe-west1:app-postgres-prod"
V2 = "/usr/local/bin/cloud-sql-proxy"
V1 = "/usr/bin/cloud_sql_proxy"

V2_CASES = [
    ("plain", {}, []),
    ("iam", {"iam": True}, ["--auto-iam-authn"]),
    ("private-ip", {"private_ip": True}, ["--private-ip"]),
    ("credentials", {"credentials_file": "/keys/sa.json"}, ["--credentials-file", "/keys/sa.json"]),
    ("impersonate", {"impersonate": "proxy@my-project.iam.gserviceaccount.com"},
     ["--impersonate-service-account", "proxy@my-project.iam.gserviceaccount.com"]),
    ("health", {"health_port": 9091}, ["--health-check", "--http-address", "127.0.0.1", "--http-port", "9091"]),
    ("everything", {"iam": True, "private_ip": True, "credentials_file": "/k.json", "impersonate": "a@b",
                    "health_port": 9000},
     ["--auto-iam-authn", "--private-ip", "--credentials-file", "/k.json", "--impersonate-service-account", "a@b",
      "--health-check", "--http-address", "127.0.0.1", "--http-port", "9000"]),
]


@pytest.mark.parametrize(("flags", "extra"), [case[1:] for case in V2_CASES], ids=[case[0] for case in V2_CASES])
def test_v2_argv(flags, extra):
    argv = v2_argv(V2, ProxyOptions(INSTANCE, 5434, **flags))
    assert argv == [V2, INSTANCE, "--port", "5434", "--address", "127.0.0.1", *extra]


V1_CASES = [
    ("plain", {}, []),
    ("iam", {"iam": True}, ["-enable_iam_login"]),
    ("private-ip", {"private_ip": True}, ["-ip_address_types=PRIVATE"]),
    ("credentials", {"credentials_file": "/keys/sa.json"}, ["-credential_file=/keys/sa.json"]),
    ("everything", {"iam": True, "private_ip": True, "credentials_file": "/k.json"},
     ["-enable_iam_login", "-ip_address_types=PRIVATE", "-credential_file=/k.json"]),
]


@pytest.mark.parametrize(("flags", "extra"), [case[1:] for case in V1_CASES], ids=[case[0] for case in V1_CASES])
def test_v1_argv(flags, extra):
    argv = v1_argv(V1, ProxyOptions(INSTANCE, 5434, **flags))
    assert argv == [V1, f"-instances={INSTANCE}=tcp:127.0.0.1:5434", *extra]


@pytest.mark.parametrize(("major", "first_flag"), [(2, INSTANCE), (1, f"-instances={INSTANCE}=tcp:127.0.0.1:5434")],
                         ids=["v2", "v1"])
def test_proxy_argv_picks_the_syntax_by_major_version(major, first_flag):
    assert proxy_argv("proxy", major, ProxyOptions(INSTANCE, 5434))[1] == first_flag


@pytest.mark.parametrize("flags", [{"impersonate": "sa@p.iam.gserviceaccount.com"}, {"health_port": 9090}],
                         ids=["impersonate", "health-check"])
def test_v1_refuses_what_it_cannot_do(flags):
    with pytest.raises(ConfigError, match="v2 proxy"):
        v1_argv(V1, ProxyOptions(INSTANCE, 5434, **flags))


@pytest.mark.parametrize("name", [
    "my-project:europe-west1:app-postgres-prod",
    "example.com:my-project:us-central1:db",
    "p1:r:i",
], ids=["plain", "domain-scoped", "short"])
def test_valid_connection_names(name):
    assert validate_connection_name(f" {name} ") == name


@pytest.mark.parametrize("name", [
    "PROJECT:europe-west1:app-postgres-prod",  # the placeholder when gcpProject is unset
    "my-project:europe-west1:db?address=0.0.0.0",  # v2 query syntax would rebind on every interface
    "my-project:europe-west1:db=tcp:0.0.0.0:5432",  # v1 listener syntax, same danger
    "my-project:europe-west1:db,other:europe-west1:db",
    "my-project:db",
    "",
    "my project:europe-west1:db",
    "my-project:europe-west1:db --address 0.0.0.0",
], ids=["placeholder", "v2-query", "v1-listener", "list", "two-parts", "empty", "space", "flag-injection"])
def test_invalid_connection_names_are_refused(name):
    with pytest.raises(ConfigError, match="PROJECT:REGION:INSTANCE"):
        v2_argv(V2, ProxyOptions(name, 5434))


@pytest.mark.parametrize("port", [0, -1, 65536], ids=["zero", "negative", "too-big"])
def test_invalid_ports_are_refused(port):
    with pytest.raises(ConfigError, match="not a TCP port"):
        v1_argv(V1, ProxyOptions(INSTANCE, port))


def test_no_password_reaches_argv_or_the_proxy_environment():
    secret = "s3cr3t-Pa55word"
    environ = {
        "HOME": "/root", "PATH": "/usr/bin", "GOOGLE_APPLICATION_CREDENTIALS": "/keys/sa.json",
        "CLOUDSDK_CONFIG": "/root/.config/gcloud", "CLOUD_SQL_QUOTA_PROJECT": "p",
        "PGPASSWORD": secret, "TETHER_PROD_PASSWORD": secret, "TETHER_PROD_READONLY_PASSWORD": secret,
        "DATABASE_URL": f"postgresql://u:{secret}@h/db", "REDIS_PASSWORD": secret, "PGPASSFILE": "/root/.pgpass",
    }
    env = proxy_env(environ)
    assert secret not in " ".join(env.values())
    assert set(env) == {"HOME", "PATH", "GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG",
                        "CLOUD_SQL_QUOTA_PROJECT"}
    options = ProxyOptions(INSTANCE, 5434, iam=True, private_ip=True, credentials_file="/keys/sa.json")
    for argv in (v2_argv(V2, options), v1_argv(V1, options)):
        assert not any(secret in arg or "password" in arg.lower() or "token" in arg.lower() for arg in argv)


@pytest.mark.parametrize(("text", "major"), [
    ("cloud-sql-proxy version 2.8.0+linux.amd64\n", 2),
    ("cloud-sql-proxy version 2.99.0+fake\n", 2),
    ("cloud-sql-proxy version 3.0.0\n", 3),
    ("Cloud SQL Auth proxy: 1.33.2+linux.amd64\n", 1),
    ("Cloud SQL Proxy: NO_VERSION_SET\n", 1),  # Debian's build
    ("flag provided but not defined: -version\n", None),
    ("", None),
], ids=["v2", "stand-in", "v3", "v1", "debian-v1", "unknown-flag", "empty"])
def test_parse_version_output(text, major):
    assert parse_version_output(text) == major


@pytest.mark.parametrize(("path", "major"), [
    ("/usr/local/bin/cloud-sql-proxy", 2), ("/usr/bin/cloud_sql_proxy", 1), ("/opt/proxy", 1),
], ids=["v2-name", "v1-name", "other"])
def test_major_from_name(path, major):
    assert major_from_name(path) == major


@pytest.mark.parametrize(("log", "ready"), [
    ("2024/01/01 10:00:00 The proxy has started successfully and is ready for new connections!\n", True),
    ("2024/01/01 10:00:00 Ready for new connections\n", True),
    ("2024/01/01 10:00:00 Listening on 127.0.0.1:5434\n", False),
    ("", False),
], ids=["v2", "v1", "listening-only", "empty"])
def test_is_ready(log, ready):
    assert is_ready(log) is ready


FAILURE_LOGS = [
    ("v1-no-credentials",  # the Debian v1 binary, verbatim
     "2026/11/21 15:34:50 google: could not find default credentials. See https://developers.google.com/accounts/"
     "docs/application-default-credentials for more information.", "no-credentials"),
    ("v2-no-credentials",
     "The proxy has encountered a terminal error: unable to start: failed to create default credentials: google: "
     "could not find default credentials.", "no-credentials"),
    ("v1-bad-key",
     'errors parsing config:\n\tGet "https://sqladmin.googleapis.com/...": private key should be a PEM or plain '
     "PKCS1 or PKCS8; parse error", "bad-credentials"),
    ("v1-not-found",
     "errors parsing config:\n\tgoogleapi: Error 404: The Cloud SQL instance does not exist., instanceDoesNotExist",
     "not-found"),
    ("v2-forbidden",
     "failed to get instance: googleapi: Error 403: boss::NOT_AUTHORIZED: Not authorized to access resource., "
     "forbidden", "not-authorized"),
    ("v1-no-network",
     'oauth2: cannot fetch token: Post "https://oauth2.googleapis.com/token": dial tcp: lookup oauth2.googleapis.com'
     " on 10.0.0.53:53: no such host", "network"),
    ("v2-port-taken",
     "unable to start: [p:r:i] Unable to mount socket: listen tcp 127.0.0.1:5434: bind: address already in use",
     "port-in-use"),
    ("v1-old-flag", "flag provided but not defined: -enable_iam_login\nUsage of cloud_sql_proxy:", "unsupported-flag"),
    ("v2-unknown-flag", "Error: unknown flag: --frobnicate", "unsupported-flag"),
    ("timestamps-only", "2026/11/21 14:04:04 current FDs rlimit set to 20000, wanted limit is 8500.", None),
]


@pytest.mark.parametrize(("log", "reason"), [case[1:] for case in FAILURE_LOGS], ids=[c[0] for c in FAILURE_LOGS])
def test_classify_failure(log, reason):
    kind = classify_failure(log)
    assert (kind.reason if kind else None) == reason


PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:151A 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 424242 1 0 100 0 0 10 0
   1: 00000000:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111111 1 0 100 0 0 10 0
   2: 0100007F:151A 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 999999 1 0 20 4 30 10 -1
"""


@pytest.mark.parametrize(("port", "inodes"), [(5402, {424242}), (5432, {111111}), (5434, set())],
                         ids=["loopback", "any-address", "free"])
def test_listening_inodes(port, inodes):
    assert listening_inodes(PROC_NET_TCP, port) == inodes


def test_the_diagnosis_quotes_the_line_that_told():
    log = "2026/11/21 15:34:50 rlimit ok\n2026/11/21 15:34:50 google: could not find default credentials. See x\nbye\n"
    diagnosis = classify_failure(log)
    assert diagnosis is not None
    assert diagnosis.line == "2026/11/21 15:34:50 google: could not find default credentials. See x"
