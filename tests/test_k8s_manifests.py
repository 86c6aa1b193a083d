"""Checks of the Kubernetes manifests in k8s/, offline.

Each overlay is rendered by a small emulation of kustomize (below) and every
rendered object is validated against the Kubernetes JSON schemas that the
kubernetes-validate package ships, in strict mode (unknown fields are
errors). The remaining tests hold the manifests to the code: the command
that the containers run, the port gunicorn binds, the probe paths and
ports of the gateway and of ingest, the environment variables, the
resources and the drain timing.
"""

from __future__ import annotations

import ast
import copy
import functools
import re
import threading
import tomllib
from pathlib import Path
from typing import Any, Iterable
from wsgiref.util import setup_testing_defaults

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from prometheus_client import CollectorRegistry

from fanout.supervisor import STOP_TIMEOUT
from ingest.config import parse_config
from ingest.health import HealthMonitor
from ingest.metrics import make_app
from livegate.settings import SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
BASE = K8S / "base"
DEV = K8S / "overlays" / "dev"
PRODUCTION = K8S / "overlays" / "production"
# A patch that the production overlay documents but does not apply by default.
CONNECTIONS_PATCH = PRODUCTION / "hpa-connections.yaml"

# The oldest and the newest Kubernetes release the manifests must be valid
# for. 1.30 is the first release that enables the preStop sleep action by
# default, and 1.37 is the newest schema set in kubernetes-validate 1.37.0.
KUBERNETES_VERSIONS = ("1.30", "1.37")

# Variables livegate reads besides its own settings: gunicorn reads
# WEB_CONCURRENCY, PORT and GUNICORN_CMD_ARGS, and Python PYTHONUNBUFFERED.
NON_SETTING_ENV = {"WEB_CONCURRENCY", "PORT", "GUNICORN_CMD_ARGS", "PYTHONUNBUFFERED"}
SETTING_BY_ENV = {setting.env: setting for setting in SETTINGS}
ALLOWED_ENV = set(SETTING_BY_ENV) | NON_SETTING_ENV

GATEWAY_COMMAND = ["gunicorn", "-c", "gunicorn.conf.py", "app:app"]
INGEST_COMMAND = ["python", "-m", "ingest", "--config"]
GATEWAY_RESOURCES = {"cpu": "500m", "memory": "512Mi"}
LIVEGATE_IMAGE = "livegate"


# --- kustomize emulation ---------------------------------------------------
#
# Supports what the kustomizations here use, and rejects everything else so
# that a new field cannot be silently ignored:
#   resources   files (several documents each) and directories holding a
#               kustomization.yaml
#   patches     `- path: FILE` entries only. Each document is a strategic
#               merge patch, matched to a resource by kind and name.
#               `$patch: delete` at its top removes that resource.
#   images      name, newName, newTag, digest
#   namespace   set on every namespaced object
# Strategic merge: maps merge key by key, a null value deletes the key,
# lists named in MERGE_KEYS merge item by item on that key (as Kubernetes
# declares for those fields), and every other list is replaced whole.

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "namespace", "resources", "patches", "images"}
MERGE_KEYS = {
    "containers": ("name",),
    "initContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "ports": ("containerPort", "port"),
    "topologySpreadConstraints": ("topologyKey",),
}
CLUSTER_SCOPED_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass"}


def load_documents(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as stream:
        return [document for document in yaml.safe_load_all(stream) if document is not None]


def load_kustomization(directory: Path) -> dict:
    (kustomization,) = load_documents(directory / "kustomization.yaml")
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    if unknown:
        raise NotImplementedError(
            f"{directory / 'kustomization.yaml'}: fields {sorted(unknown)} are not emulated. "
            "Extend the emulation in this test first."
        )
    return kustomization


def render(directory: Path, extra_patches: Iterable[Path] = ()) -> list[dict]:
    """Build a kustomization directory the way `kubectl kustomize` does, for the emulated fields."""
    kustomization = load_kustomization(directory)
    resources: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            resources.extend(render(path))
        else:
            resources.extend(load_documents(path))

    patch_paths = []
    for entry in kustomization.get("patches", []):
        if set(entry) != {"path"}:
            raise NotImplementedError(f"{directory}: only `- path: FILE` patches are emulated")
        patch_paths.append(directory / entry["path"])
    for path in [*patch_paths, *extra_patches]:
        for patch in load_documents(path):
            resources = apply_patch(resources, patch, path)

    for image in kustomization.get("images", []):
        for resource in resources:
            set_image(resource, image)

    if "namespace" in kustomization:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED_KINDS:
                resource["metadata"]["namespace"] = kustomization["namespace"]
    return resources


def apply_patch(resources: list[dict], patch: dict, path: Path) -> list[dict]:
    key = (patch["kind"], patch["metadata"]["name"])
    matches = [r for r in resources if (r["kind"], r["metadata"]["name"]) == key]
    if len(matches) != 1:
        raise AssertionError(f"{path}: patch for {key} matches {len(matches)} resources, expected 1")
    target = matches[0]
    if patch.get("$patch") == "delete":
        return [r for r in resources if r is not target]
    merge_map(target, patch)
    return resources


def merge_map(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if key.startswith("$"):
            raise NotImplementedError(f"strategic merge directive {key} is not emulated")
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_map(target[key], value)
        elif isinstance(value, list) and isinstance(target.get(key), list):
            target[key] = merge_list(key, target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def merge_list(field: str, target: list, patch: list) -> list:
    items = target + patch
    merge_key = next(
        (
            candidate
            for candidate in MERGE_KEYS.get(field, ())
            if all(isinstance(item, dict) and candidate in item for item in items)
        ),
        None,
    )
    if merge_key is None:
        return copy.deepcopy(patch)
    merged = copy.deepcopy(target)
    for item in patch:
        existing = next((m for m in merged if m[merge_key] == item[merge_key]), None)
        if existing is None:
            merged.append(copy.deepcopy(item))
        else:
            merge_map(existing, item)
    return merged


def split_image(reference: str) -> tuple[str, str | None, str | None]:
    """Split `name[:tag][@digest]`, keeping a registry's `host:port/` in the name."""
    name, _, digest = reference.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest or None


def set_image(resource: dict, image: dict) -> None:
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise NotImplementedError(f"image fields {sorted(unknown)} are not emulated")
    for container in all_containers(resource):
        name, tag, digest = split_image(container["image"])
        if name != image["name"]:
            continue
        name = image.get("newName", name)
        if "digest" in image:
            container["image"] = f"{name}@{image['digest']}"
        elif "newTag" in image:
            container["image"] = f"{name}:{image['newTag']}"
        else:
            reference = name
            if tag:
                reference += f":{tag}"
            if digest:
                reference += f"@{digest}"
            container["image"] = reference


# --- access helpers ---------------------------------------------------------


@functools.cache
def rendered(name: str) -> tuple[dict, ...]:
    directories = {
        "base": (BASE, ()),
        "dev": (DEV, ()),
        "production": (PRODUCTION, ()),
        "production+connections": (PRODUCTION, (CONNECTIONS_PATCH,)),
    }
    directory, extra = directories[name]
    return tuple(render(directory, extra))


RENDERINGS = ("base", "dev", "production", "production+connections")


def resources(name: str) -> list[dict]:
    """Return a deep copy of one rendering, so that no test changes another's input."""
    return copy.deepcopy(list(rendered(name)))


def find(objects: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name!r}, found {len(matches)}"
    return matches[0]


def find_optional(objects: list[dict], kind: str, name: str) -> dict | None:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return matches[0] if matches else None


def all_containers(resource: dict) -> list[dict]:
    pod = resource.get("spec", {}).get("template", {}).get("spec")
    if pod is None:
        return []
    return pod.get("containers", []) + pod.get("initContainers", [])


def livegate_containers(objects: list[dict]) -> list[tuple[dict, dict]]:
    """List (Deployment, container) for every container that runs the livegate image."""
    found = []
    for resource in objects:
        for container in all_containers(resource):
            name, _, _ = split_image(container["image"])
            if name.rsplit("/", 1)[-1] == LIVEGATE_IMAGE:
                found.append((resource, container))
    return found


def gateway(objects: list[dict]) -> tuple[dict, dict]:
    deployment = find(objects, "Deployment", "livegate-gateway")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


def ingest(objects: list[dict]) -> tuple[dict, dict]:
    deployment = find(objects, "Deployment", "livegate-ingest")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


def settings_data(objects: list[dict]) -> dict[str, str]:
    """Collect the variables that the livegate-settings ConfigMap and livegate-secrets Secret set."""
    values = dict(find(objects, "ConfigMap", "livegate-settings").get("data", {}))
    secret = find_optional(objects, "Secret", "livegate-secrets")
    if secret is not None:
        values.update(secret.get("stringData", {}))
    return values


def effective_settings(objects: list[dict]) -> Settings:
    data = settings_data(objects)
    return Settings.from_env({k: v for k, v in data.items() if k in SETTING_BY_ENV})


def gunicorn_setting(name: str) -> Any:
    """Read a constant assignment from gunicorn.conf.py without importing it."""
    tree = ast.parse((ROOT / "gunicorn.conf.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"gunicorn.conf.py assigns no constant {name}")


def dockerfile_user() -> tuple[int, int]:
    users = [i["value"] for i in DockerfileParser(str(ROOT / "Dockerfile")).structure
             if i["instruction"] == "USER"]
    uid, _, gid = users[-1].partition(":")
    return int(uid), int(gid)


def label_selector_matches(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are used here"
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def nginx_size_bytes(text: str) -> int:
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", text)
    assert match, f"invalid nginx size {text!r}"
    factor = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]
    return int(match.group(1)) * factor


# --- the emulation itself ---------------------------------------------------


def test_emulation_merges_lists_by_key():
    target = {"containers": [{"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}]}]}
    merge_map(target, {"containers": [{"name": "a", "env": [{"name": "B", "value": "2"}]},
                                      {"name": "b", "image": "y"}]})
    assert [c["name"] for c in target["containers"]] == ["a", "b"]
    assert target["containers"][0]["image"] == "x"
    assert target["containers"][0]["env"] == [{"name": "A", "value": "1"},
                                               {"name": "B", "value": "2"}]


def test_emulation_replaces_other_lists():
    target = {"metrics": [{"type": "Resource"}], "args": ["a", "b"]}
    merge_map(target, {"metrics": [{"type": "Pods"}], "args": ["c"]})
    assert target == {"metrics": [{"type": "Pods"}], "args": ["c"]}


def test_emulation_null_deletes_key():
    target = {"spec": {"replicas": 3, "paused": False}}
    merge_map(target, {"spec": {"replicas": None}})
    assert target == {"spec": {"paused": False}}


@pytest.mark.parametrize(
    ("reference", "image", "expected"),
    [
        ("livegate", {"name": "livegate", "newTag": "dev"}, "livegate:dev"),
        ("livegate:old", {"name": "livegate", "newName": "r.example/livegate"},
         "r.example/livegate:old"),
        ("livegate", {"name": "livegate", "digest": "sha256:ab"}, "livegate@sha256:ab"),
        ("host:5000/livegate:1", {"name": "host:5000/livegate", "newTag": "2"},
         "host:5000/livegate:2"),
        ("redis:7", {"name": "livegate", "newTag": "dev"}, "redis:7"),
    ],
)
def test_emulation_sets_images(reference, image, expected):
    deployment = {"spec": {"template": {"spec": {"containers": [{"image": reference}]}}}}
    set_image(deployment, image)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == expected


def test_every_manifest_file_is_used():
    used = {CONNECTIONS_PATCH}
    for kustomization_file in K8S.rglob("kustomization.yaml"):
        directory = kustomization_file.parent
        used.add(kustomization_file)
        kustomization = load_kustomization(directory)
        for entry in kustomization.get("resources", []):
            used.add((directory / entry).resolve())
        for entry in kustomization.get("patches", []):
            used.add((directory / entry["path"]).resolve())
    files = {p.resolve() for p in K8S.rglob("*") if p.suffix in (".yaml", ".yml")}
    unused = sorted(str(p.relative_to(ROOT)) for p in files - {u.resolve() for u in used})
    assert unused == [], f"manifests that no kustomization includes: {unused}"


# --- schema validation ------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("rendering", RENDERINGS)
def test_rendering_matches_schema(rendering, version):
    errors = []
    for resource in resources(rendering):
        where = f"{resource['kind']}/{resource['metadata']['name']}"
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            errors.append(f"{where}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"{where}: {error.message}")
    assert not errors, "\n".join(errors)


def test_schema_validation_rejects_unknown_field():
    # Guards the test above: strict mode must reject a misspelt field.
    deployment, container = gateway(resources("base"))
    container["readinesProbe"] = container["readinessProbe"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


# --- the manifests against the code ------------------------------------------


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_gateway_runs_gunicorn_app(rendering):
    _, container = gateway(resources(rendering))
    args = container.get("command", []) + container["args"]
    bind = args.index("--bind")
    assert args[:bind] + args[bind + 2:] == GATEWAY_COMMAND
    host, _, port = args[bind + 1].rpartition(":")
    assert host == "0.0.0.0"
    (container_port,) = container["ports"]
    assert container_port == {"name": "http", "containerPort": int(port), "protocol": "TCP"}


@pytest.mark.parametrize("rendering", ["base", "production"])
def test_ingest_runs_with_mounted_config(rendering):
    objects = resources(rendering)
    deployment, container = ingest(objects)
    assert deployment["spec"]["replicas"] == 2
    args = container.get("command", []) + container["args"]
    assert args[:4] == INGEST_COMMAND
    config_path = Path(args[4])

    pod = deployment["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    mount = mounts[str(config_path.parent)]
    assert mount.get("readOnly") is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    items = {item["path"]: item["key"] for item in volume["configMap"]["items"]}
    key = items[config_path.name]
    config_map = find(objects, "ConfigMap", volume["configMap"]["name"])
    # Validated as `python -m ingest` does, except that the API key
    # variables come from a Secret created outside Git.
    config = parse_config(tomllib.loads(config_map["data"][key]), resolve_keys=False)

    key_variables = {p.api_key_env for p in config.providers.values() if p.api_key_env}
    assert not key_variables & ALLOWED_ENV, "API key variables must not shadow livegate settings"
    secrets = {s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s}
    assert "livegate-ingest-credentials" in secrets


def test_probe_paths_are_app_routes():
    from app import create_app

    routes = {rule.rule for rule in create_app().url_map.iter_rules()}
    _, container = gateway(resources("base"))
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in routes, f"{probe} path {get['path']} is not a route"
        assert get["port"] == "http", f"{probe} must use the named container port"


def ingest_status(path: str) -> int:
    """Return the HTTP status that the ingest process's server sends for ``GET path``."""
    app = make_app(CollectorRegistry(), HealthMonitor("manifest-test", threading.Event()))
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path}
    setup_testing_defaults(environ)
    statuses = []
    b"".join(app(environ, lambda status, headers: statuses.append(status)))
    return int(statuses[0].split()[0])


def test_ingest_status_rejects_unknown_path():
    # Guards the test below: an unserved path must not pass for a served one.
    assert ingest_status("/no-such-probe") == 404
    assert ingest_status("/healthz") == 200


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_ingest_probes_are_served(rendering):
    _, container = ingest(resources(rendering))
    args = container.get("command", []) + container["args"]
    metrics_port = int(args[args.index("--metrics-port") + 1])
    if "--metrics-address" in args:
        address = args[args.index("--metrics-address") + 1]
        assert address in ("0.0.0.0", "::"), "the kubelet probes the pod IP, so listen on every interface"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["metrics"] == metrics_port

    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert ingest_status(get["path"]) != 404, f"{probe} path {get['path']} is not served by ingest"
        assert get["port"] == "metrics", f"{probe} must use the named port of --metrics-port"


def test_ingest_liveness_allows_slow_probe():
    # The handler reads in-memory state, but it shares the GIL with the
    # polling threads on a throttled CPU. One slow response must not
    # restart the replica.
    _, container = ingest(resources("base"))
    probe = container["livenessProbe"]
    assert probe["failureThreshold"] >= 3
    assert probe["timeoutSeconds"] >= 2


def test_liveness_outlasts_worker_timeout():
    # gunicorn replaces a blocked worker after `timeout`, and the kubelet must
    # not restart the whole pod (dropping every stream) before that.
    _, container = gateway(resources("base"))
    probe = container["livenessProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= gunicorn_setting("timeout")


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_env_names_are_read_by_code(rendering):
    objects = resources(rendering)
    for deployment, container in livegate_containers(objects):
        names = {env["name"] for env in container.get("env", [])}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                names |= set(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
            elif source["secretRef"]["name"] == "livegate-secrets":
                secret = find_optional(objects, "Secret", "livegate-secrets")
                if secret is not None:
                    names |= set(secret.get("stringData", {})) | set(secret.get("data", {}))
        unknown = sorted(names - ALLOWED_ENV)
        assert unknown == [], f"{deployment['metadata']['name']} sets unread variables {unknown}"


@pytest.mark.parametrize("rendering", ["base", "dev", "production"])
def test_setting_values_parse(rendering):
    objects = resources(rendering)
    for name, value in settings_data(objects).items():
        assert isinstance(value, str), f"{name}: ConfigMap and Secret values must be strings"
        if name in SETTING_BY_ENV:
            SETTING_BY_ENV[name].parse(value)
    concurrency = settings_data(objects).get("WEB_CONCURRENCY", "2")
    assert int(concurrency) >= 1


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_gateway_resources_exact(rendering):
    _, container = gateway(resources(rendering))
    assert container["resources"]["requests"] == GATEWAY_RESOURCES
    assert container["resources"]["limits"] == GATEWAY_RESOURCES


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_grace_period_covers_drain(rendering):
    objects = resources(rendering)
    deployment, container = gateway(objects)
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    graceful_timeout = gunicorn_setting("graceful_timeout")
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    # The master stops the subscriber after the workers, waiting up to STOP_TIMEOUT.
    assert grace >= pre_stop + graceful_timeout + STOP_TIMEOUT
    assert pre_stop >= 5, "kube-proxy and ingress controllers need a few seconds"
    assert effective_settings(objects).shutdown_window < graceful_timeout


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_security_context_restricted(rendering):
    uid, gid = dockerfile_user()
    objects = resources(rendering)
    livegate = {id(c) for _, c in livegate_containers(objects)}
    for resource in objects:
        if resource["kind"] != "Deployment":
            continue
        pod = resource["spec"]["template"]["spec"]
        name = resource["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        emptydirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["runAsNonRoot"] is True, name
            assert context["runAsUser"] != 0, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            if id(container) in livegate:
                assert pod["enableServiceLinks"] is False, name
                assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid), name
                tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
                assert len(tmp) == 1, f"{name}: mount an emptyDir at /tmp"
                assert tmp[0]["name"] in emptydirs, f"{name}: /tmp must be an emptyDir"


def test_gateway_spreads_over_nodes_and_zones():
    deployment, _ = gateway(resources("base"))
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    constraints = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    keys = {c["topologyKey"] for c in constraints}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in constraints:
        assert label_selector_matches(constraint["labelSelector"], pod_labels)


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_selectors_match_own_pods_only(rendering):
    objects = resources(rendering)
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    for deployment in deployments:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert label_selector_matches(deployment["spec"]["selector"], labels)

    def selected(selector: dict) -> list[str]:
        return [d["metadata"]["name"] for d in deployments
                if label_selector_matches(selector, d["spec"]["template"]["metadata"]["labels"])]

    service = find(objects, "Service", "livegate-gateway")
    assert selected({"matchLabels": service["spec"]["selector"]}) == ["livegate-gateway"]
    for pdb_name in ("livegate-gateway", "livegate-ingest"):
        pdb = find(objects, "PodDisruptionBudget", pdb_name)
        assert selected(pdb["spec"]["selector"]) == [pdb_name]


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_service_targets_gateway_port(rendering):
    objects = resources(rendering)
    _, container = gateway(objects)
    container_ports = {p["name"] for p in container["ports"]}
    service = find(objects, "Service", "livegate-gateway")
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in container_ports


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_hpa_owns_gateway_replicas(rendering):
    objects = resources(rendering)
    deployment, _ = gateway(objects)
    assert "replicas" not in deployment["spec"], "the HorizontalPodAutoscaler sets replicas"
    hpa = find(objects, "HorizontalPodAutoscaler", "livegate-gateway")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "livegate-gateway")
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert [m["resource"]["name"] for m in cpu] == ["cpu"]


def test_connections_hpa_uses_pod_metric():
    hpa = find(resources("production+connections"), "HorizontalPodAutoscaler", "livegate-gateway")
    pods = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert [p["metric"]["name"] for p in pods] == ["livegate_connections"]
    assert pods[0]["target"]["type"] == "AverageValue"
    assert hpa["spec"]["minReplicas"] == find(
        resources("production"), "HorizontalPodAutoscaler", "livegate-gateway"
    )["spec"]["minReplicas"]


def test_ingress_passes_sse_through():
    objects = resources("production")
    ingress = find(objects, "Ingress", "livegate")
    annotations = ingress["metadata"]["annotations"]
    settings = effective_settings(objects)
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    for name in ("proxy-read-timeout", "proxy-send-timeout"):
        timeout = int(annotations[f"nginx.ingress.kubernetes.io/{name}"])
        assert timeout >= 3600, name
        assert timeout > 2 * settings.heartbeat_interval, name
    body_size = nginx_size_bytes(annotations["nginx.ingress.kubernetes.io/proxy-body-size"])
    assert body_size >= settings.max_publish_bytes
    assert not any("snippet" in key for key in annotations), "snippets are off by default"

    service = find(objects, "Service", "livegate-gateway")
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == "livegate-gateway"
            assert backend["port"]["name"] in service_ports


def ingress_reaches(ingress: dict, request_path: str) -> bool:
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            if path["pathType"] == "Exact" and request_path == path["path"]:
                return True
            prefix = path["path"].rstrip("/")
            if path["pathType"] == "Prefix" and (
                request_path == prefix or request_path.startswith(prefix + "/")
            ):
                return True
    return False


def test_ingress_exposes_public_routes_only():
    from app import create_app

    ingress = find(resources("production"), "Ingress", "livegate")
    routes = {rule.rule for rule in create_app().url_map.iter_rules()}
    public = {"/v1/stream", "/v1/channels", "/v1/publish/<channel:channel>"}
    operational = {"/healthz", "/readyz", "/metrics", "/status", "/status.json"}
    for route in public:
        assert route in routes, f"{route} is no longer a route: update this test"
        assert ingress_reaches(ingress, route), f"{route} must be public"
    for route in operational & routes:
        assert not ingress_reaches(ingress, route), f"{route} must stay inside the cluster"
    assert ingress_reaches(ingress, "/static/page.css")


def test_redis_only_in_dev():
    for rendering in ("base", "production"):
        components = {o["metadata"].get("labels", {}).get("app.kubernetes.io/component")
                      for o in resources(rendering)}
        assert "redis" not in components, rendering

    objects = resources("dev")
    service = find(objects, "Service", "livegate-redis")
    (port,) = service["spec"]["ports"]
    assert effective_settings(objects).redis_url == (
        f"redis://{service['metadata']['name']}:{port['port']}/0"
    )


def test_production_has_no_placeholders():
    objects = resources("production")
    assert find_optional(objects, "Secret", "livegate-secrets") is None
    assert "REPLACE-ME" not in yaml.safe_dump_all(objects)
    for deployment, container in livegate_containers(objects):
        _, tag, digest = split_image(container["image"])
        assert digest or (tag and tag != "latest"), f"{deployment['metadata']['name']}: pin the image"


def test_dev_runs_demo_feed_not_pollers():
    objects = resources("dev")
    deployment, _ = ingest(objects)
    assert deployment["spec"]["replicas"] == 0
    feed = find(objects, "Deployment", "livegate-demo-feed")
    (container,) = feed["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["python", "-m", "ingest.demo"]
    assert all(o["metadata"].get("namespace") == "livegate-dev"
               for o in objects if o["kind"] != "Namespace")


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_channels_file_is_mounted_and_valid(rendering):
    from livegate.channel_config import parse as parse_channels

    objects = resources(rendering)
    path = Path(settings_data(objects)["LIVEGATE_CHANNELS_FILE"])
    config_map = find(objects, "ConfigMap", "livegate-channels")
    # Loaded as the gateway and ingest load it at start.
    parse_channels(config_map["data"][path.name], effective_settings(objects), path.name)
    for deployment, container in (gateway(objects), ingest(objects)):
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        mount = mounts[str(path.parent)]
        assert mount.get("readOnly") is True
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        volume = next(v for v in volumes if v["name"] == mount["name"])
        assert volume["configMap"]["name"] == "livegate-channels"
