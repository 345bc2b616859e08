"""The deployment files: services/Dockerfile, .dockerignore, docker-compose.yml (and its CPU
overlay docker-compose.cpu.yml) and k8s/.

These tests parse the files, validate them against the official schemas where one exists offline
(the Compose Specification schema vendored by check-jsonschema, the Kubernetes schemas shipped by
kubernetes-validate), and check that the files agree with each other and with the service contract
in docs/deployment.md. scripts/compose-check.sh runs the compose files for real (minutes, Docker
needed); a cluster never runs here, so the manifests are held to what that check proves.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shlex
import sys
from collections.abc import Iterator
from functools import cache
from importlib.metadata import packages_distributions
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"

# The service contract: the command each service runs (docs/deployment.md).
COMMANDS = {
    "migrate": "xstilts db upgrade",
    "models": "xstilts models prepare",
    "api": "python -m services.api --host 0.0.0.0 --port 8000",
    # No --concurrency: the pool is XSTILTS_STAGES_PER_GPU processes (1 without a GPU).
    "worker": "celery -A services.worker.main worker -Q gpu --prefetch-multiplier 1 -O fair"
    " --loglevel INFO",
    "scheduler": "celery -A services.worker.main beat --loglevel INFO",
    "eval": "celery -A services.eval.main worker -Q eval --concurrency 2 --loglevel INFO",
}
# Settings every xstilts container gets, besides XSTILTS_DATABASE_URL (which holds the password).
ENVIRONMENT = {
    "XSTILTS_BROKER_URL": "redis://redis:6379/0",
    "XSTILTS_ARTIFACTS_DIR": "/artifacts",
    "XSTILTS_DATA_DIR": "/data",
    "XSTILTS_CACHE_DIR": "/cache",
    # read-only root file systems: whatever a library writes under ~ goes to the /tmp tmpfs/emptyDir
    "HOME": "/tmp",
}
DATABASE_URL = re.compile(r"postgresql\+psycopg://xstilts:(?P<password>.+)@postgres:5432/xstilts")
SHARED_MOUNTS = {"/artifacts": False, "/cache": False, "/data": True}  # path -> read-only
# The services that mount the shared volumes (every xstilts service but the migration).
APP_SERVICES = ("api", "worker", "scheduler", "eval")
# One Dockerfile; each image is one of its build targets, named after the process it runs.
DOCKERFILE = REPO / "services" / "Dockerfile"
TARGETS = ("api", "worker", "eval")
# The image each target is tagged as (compose, k8s), and back.
IMAGES = {target: f"xstilts-{target}" for target in TARGETS}
TARGET_OF_IMAGE = {image: target for target, image in IMAGES.items()}
# The image each contract role runs (the migration and celery beat reuse the api and eval images).
IMAGE_OF_ROLE = {
    "migrate": "xstilts-api",
    "models": "xstilts-api",
    "api": "xstilts-api",
    "worker": "xstilts-worker",
    "scheduler": "xstilts-eval",
    "eval": "xstilts-eval",
}
# The Python each Ubuntu release ships as python3 (the CUDA base uses it).
UBUNTU_PYTHON = {"22.04": "3.10", "24.04": "3.12"}
# Versions of Kubernetes the manifests must be valid for: an old supported one and a recent one.
K8S_VERSIONS = ("1.29", "1.33")
# Kubernetes' resource.Quantity syntax (the JSON schemas accept any string)
QUANTITY = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?")
KEDA_REDIS_KEYS = {
    "address",
    "addressFromEnv",
    "host",
    "hostFromEnv",
    "port",
    "portFromEnv",
    "listName",
    "listLength",
    "activationListLength",
    "databaseIndex",
    "enableTLS",
    "unsafeSsl",
    "usernameFromEnv",
    "passwordFromEnv",
}


def argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


# --- Dockerfiles -------------------------------------------------------------------------------


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, f"{path}: the file ends inside a line continuation"
    return out


Instruction = tuple[str, str]


@cache
def instructions() -> tuple[Instruction, ...]:
    return tuple(parse_dockerfile(DOCKERFILE))


def global_args() -> dict[str, str]:
    """ARG defaults declared before the first FROM (what a FROM line may use)."""
    args: dict[str, str] = {}
    for kw, rest in instructions():
        if kw == "FROM":
            break
        if kw == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip().strip('"')
    return args


def stages() -> dict[str, tuple[str, list[Instruction]]]:
    """Stage name -> (the FROM image or stage, unexpanded; the stage's own instructions)."""
    out: dict[str, tuple[str, list[Instruction]]] = {}
    current: list[Instruction] | None = None
    for kw, rest in instructions():
        if kw == "FROM":
            parts = rest.split()
            assert len(parts) == 3 and parts[1].upper() == "AS", f"unnamed stage: FROM {rest}"
            current = []
            assert parts[2] not in out, f"stage {parts[2]} defined twice"
            out[parts[2]] = (parts[0], current)
        elif current is not None:
            current.append((kw, rest))
    return out


def expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), text)


def compose_build_args(target: str) -> dict[str, str]:
    """The build args docker compose passes for ``target`` (the same for every service of it)."""
    got = {
        json.dumps(s["build"].get("args", {}), sort_keys=True)
        for s in services().values()
        if s.get("build", {}).get("target") == target
    }
    assert len(got) == 1, f"services building {target} disagree on build args: {got}"
    return dict(json.loads(got.pop()))


def chain(target: str, build_args: dict[str, str] | None = None) -> list[str]:
    """The stages ``docker build --target`` builds for ``target``, base first, ending at an image."""
    args = {**global_args(), **(build_args or {})}
    out = [target]
    while out[-1] in stages():
        parent = expand(stages()[out[-1]][0], args)
        assert parent not in out, f"stage cycle through {parent}"
        out.append(parent)
    return out[::-1]


def base_image(target: str, build_args: dict[str, str] | None = None) -> str:
    return chain(target, build_args)[0]


def target_instructions(target: str, build_args: dict[str, str] | None = None) -> list[Instruction]:
    return [i for stage in chain(target, build_args)[1:] for i in stages()[stage][1]]


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def dockerignored(relpath: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last matching pattern wins; a folder's match covers its files."""
    parts = relpath.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/")
        globs = [pat, pat[3:]] if pat.startswith("**/") else [pat]
        for candidate in candidates:
            if any(fnmatch.fnmatchcase(candidate, g) for g in globs) or (
                pat.startswith("**/")
                and any(fnmatch.fnmatchcase(candidate.split("/")[-1], g) for g in globs)
            ):
                ignored = not negate
                break
    return ignored


def pyproject_torch_pin() -> str:
    match = re.search(r'"torch==([^"]+)"', (REPO / "pyproject.toml").read_text())
    assert match, "pyproject.toml no longer pins torch with =="
    return match.group(1)


def test_every_target_is_a_stage_and_every_image_is_named_by_its_target() -> None:
    for target in TARGETS:
        assert target in stages(), f"services/Dockerfile has no target {target}"
        assert stages()[target][0] in stages(), f"{target} does not build on the shared base"
    # one set of install steps for all three: torch, then the library
    pip_installs = [a for kw, a in instructions() if kw == "RUN" and "pip install" in a]
    assert len(pip_installs) == 2, pip_installs
    assert len({tuple(chain(t)[1:-1]) for t in TARGETS}) == 1, "targets share one base chain"


@pytest.mark.parametrize("target", TARGETS)
def test_target_runs_as_a_non_root_user(target: str) -> None:
    users = [args for kw, args in target_instructions(target) if kw == "USER"]
    assert users, f"{target}: never sets USER, so it runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{target}: runs as {users[-1]}"


def test_dockerfile_copies_only_what_exists_and_reaches_the_build() -> None:
    patterns = dockerignore_patterns()
    copies = [args for kw, args in instructions() if kw in ("COPY", "ADD")]
    assert copies, "services/Dockerfile copies nothing from the repository"
    for args in copies:
        tokens = shlex.split(args)
        if any(t.startswith("--from") for t in tokens):
            continue
        sources = [t for t in tokens if not t.startswith("--")][:-1]
        for source in sources:
            path = REPO / source
            assert path.exists(), f"COPY {source}: not in the repository"
            assert not dockerignored(source, patterns), f"{source} is in .dockerignore"
            files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
            for file in files:
                rel = file.relative_to(REPO).as_posix()
                if "__pycache__" not in rel:
                    assert not dockerignored(rel, patterns), f"{rel} is in .dockerignore"


@pytest.mark.parametrize("target", TARGETS)
def test_target_copies_what_pip_install_needs(target: str) -> None:
    # `pip install .` needs pyproject.toml, the README it names, and the package under shared/.
    copied = " ".join(a for kw, a in target_instructions(target) if kw == "COPY")
    for needed in ("pyproject.toml", "README.md", "shared", "services"):
        assert needed in copied.split(), f"{target}: does not copy {needed}"


@pytest.mark.parametrize("target", TARGETS)
def test_target_default_command_is_the_contract(target: str) -> None:
    cmds = [args for kw, args in target_instructions(target) if kw == "CMD"]
    assert cmds, f"{target}: no CMD"
    assert json.loads(cmds[-1]) == argv(COMMANDS[target])


def test_dockerfile_pins_the_torch_of_pyproject() -> None:
    pins = re.findall(r"torch==(\S+)", DOCKERFILE.read_text())
    assert pins == [pyproject_torch_pin()], f"torch pins {pins}"


def test_worker_image_is_cuda_and_refuses_a_cpu_build() -> None:
    assert base_image("worker", compose_build_args("worker")).startswith("nvidia/cuda:")
    # Built without ACCELERATOR=cuda it would stand on the CPU base: the worker stage refuses that,
    # and a CPU build of torch.
    worker = " ".join(a for kw, a in stages()["worker"][1] if kw == "RUN")
    assert 'test "$ACCELERATOR" = cuda' in worker
    assert "torch.version.cuda" in worker


def test_dockerfile_builds_offline_with_the_builtin_frontend() -> None:
    # A `# syntax=` line makes BuildKit pull its frontend image from a registry before each build.
    first = DOCKERFILE.read_text().splitlines()[0]
    assert not re.match(r"#\s*syntax\s*=", first), first


def test_cpu_base_refuses_cuda_torch_and_nvidia_wheels() -> None:
    """The base checks the installed torch against ACCELERATOR once everything is installed: a CPU
    image carries no CUDA build and no nvidia-* wheels (what the default index's torch brings)."""
    steps = stages()["base"][1]
    check = next(a for kw, a in steps if kw == "RUN" and "torch.version.cuda" in a)
    assert "$ACCELERATOR" in check and "nvidia-" in check and "cpu::0" in check
    installs = [i for i, (kw, a) in enumerate(steps) if kw == "RUN" and "pip install" in a]
    assert steps.index(("RUN", check)) > max(installs), "checked before the last install"
    assert ("ARG", "ACCELERATOR") in steps, "the base must see ACCELERATOR"


def test_torch_wheels_default_to_an_empty_stage() -> None:
    # TORCH_WHEELS lets a build without a CPU wheel index (scripts/compose-check.sh) hand pip the
    # wheel; by default the mounted stage is empty and the index decides.
    default = global_args()["TORCH_WHEELS"]
    assert stages()[default][0] == "scratch" and not stages()[default][1]
    assert expand(stages()["torch-wheels"][0], global_args()) == default
    torch_install = next(a for kw, a in instructions() if kw == "RUN" and "pip install torch" in a)
    assert "from=torch-wheels" in torch_install and "--find-links" in torch_install


@pytest.mark.parametrize("target", ["api", "eval"])
def test_cpu_targets_stand_on_the_python_image(target: str) -> None:
    assert base_image(target).startswith("python:")
    assert base_image(target, compose_build_args(target)) == base_image(target)


def test_images_share_one_python_minor_version() -> None:
    from packaging.specifiers import SpecifierSet

    worker = base_image("worker", compose_build_args("worker"))
    ubuntu = re.search(r"ubuntu(\d+\.\d+)", worker)
    assert ubuntu and ubuntu.group(1) in UBUNTU_PYTHON, worker
    versions = {"worker": UBUNTU_PYTHON[ubuntu.group(1)]}
    for target in ("api", "eval"):
        image = base_image(target, compose_build_args(target))
        match = re.fullmatch(r"python:(\d+\.\d+)[\w.-]*", image)
        assert match, f"{target}: base image {image} is not an official python image"
        versions[target] = match.group(1)
    assert len(set(versions.values())) == 1, versions
    requires = re.search(r'requires-python\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text())
    assert requires and versions["worker"] + ".0" in SpecifierSet(requires.group(1))


def pyproject() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+")

    return tomllib.loads((REPO / "pyproject.toml").read_text())


def distribution(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def imported_modules(module: str) -> set[str]:
    """Every module ``module`` (under services/) imports, following imports within services/."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = REPO / (name.replace(".", "/") + ".py")
        if name.split(".")[0] != "services" or not path.is_file():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                todo.append(node.module)
    return seen


# The Python module a command loads: what `python -m` runs (a package's __main__), celery's -A.
def app_module(command: list[str]) -> str:
    if command[:2] == ["python", "-m"]:
        return f"{command[2]}.__main__"
    spec = command[command.index("-A") + 1] if "-A" in command else command[1]
    return spec.split(":")[0]


@pytest.mark.parametrize(
    ("role", "target"), [(r, TARGET_OF_IMAGE[IMAGE_OF_ROLE[r]]) for r in COMMANDS]
)
def test_each_target_installs_what_its_process_imports(role: str, target: str) -> None:
    """The program is installed by pip (a dependency or our own script), and every module the
    service imports is copied (services/), installed from shared/ (xstilts) or a dependency."""
    steps = target_instructions(target)
    assert any(kw == "RUN" and "pip install /tmp/src" in a for kw, a in steps), target
    workdir = [a for kw, a in steps if kw == "WORKDIR"][-1]
    assert ("COPY", "services ./services") in steps and workdir == "/app", target
    deps = {distribution(r) for r in pyproject()["project"]["dependencies"]}
    command = argv(COMMANDS[role])
    program = command[0]
    # `python` is the image's virtualenv interpreter (on PATH), the one pip installed into.
    assert program in deps or program in pyproject()["project"]["scripts"] or program == "python", (
        f"{role}: {program}"
    )
    if program == "xstilts":
        return
    modules = imported_modules(app_module(command))
    for name in modules:
        top = name.split(".")[0]
        if top == "services":
            assert (REPO / (name.replace(".", "/") + ".py")).is_file(), f"{role}: {name}"
        elif top == "xstilts":
            path = REPO / "shared" / name.replace(".", "/")
            assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), name
        else:
            # a module's distribution may be named otherwise (yaml comes from pyyaml)
            dists = {distribution(d) for d in packages_distributions().get(top, [])}
            assert top in sys.stdlib_module_names or dists & deps, f"{role} imports {name}"


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    patterns = dockerignore_patterns()
    for path in (
        ".venv/bin/python",
        ".xstilts/xstilts.db",
        "results/demo.json",
        ".git/HEAD",
        "shared/xstilts/__pycache__/cli.cpython-311.pyc",
        ".env",
        ".env.production",
        "tests/conftest.py",
        "docs/deployment.md",
        "shared/xstilts.egg-info/PKG-INFO",
    ):
        assert dockerignored(path, patterns), f"{path} would be sent to the image builder"
    for path in ("pyproject.toml", "README.md", "shared/xstilts/config.py", "services/api/main.py"):
        assert not dockerignored(path, patterns), f"{path} is needed by the build"


def image_user_uid(image: str) -> int:
    steps = target_instructions(TARGET_OF_IMAGE[image], compose_build_args(TARGET_OF_IMAGE[image]))
    users = [a for kw, a in steps if kw == "USER"]
    return int(users[-1].split(":")[0])


# --- docker-compose.yml ------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def services() -> dict[str, Any]:
    return compose()["services"]


@cache
def cpu_overlay() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.cpu.yml").read_text())


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.cpu.yml"])
def test_compose_validates_against_the_compose_specification(name: str) -> None:
    pytest.importorskip("check_jsonschema", reason="the Compose schema ships with check-jsonschema")
    import jsonschema

    resource = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(resource.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    document = compose() if name == "docker-compose.yml" else cpu_overlay()
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(document)]
    assert not errors, errors


def test_cpu_overlay_runs_the_same_worker_on_the_cpu_image() -> None:
    """docker-compose.cpu.yml (the laptop path) turns the GPU worker off and runs worker-cpu: the
    worker in every respect but its image (the CPU eval image) and its GPU reservation."""
    overlay = cpu_overlay()["services"]
    assert set(overlay) == {"worker", "worker-cpu"}
    assert overlay["worker"] == {"profiles": ["gpu"]}
    assert "profiles" not in services()["worker"], "the GPU path starts its worker by default"
    worker, cpu = services()["worker"], overlay["worker-cpu"]
    differ = {k for k in worker.keys() | cpu.keys() if worker.get(k) != cpu.get(k)}
    assert differ == {"image", "build", "deploy"}, differ
    assert "deploy" not in cpu
    assert cpu["image"] == services()["eval"]["image"]
    assert cpu["build"] == services()["eval"]["build"]
    assert base_image(cpu["build"]["target"], cpu["build"].get("args")).startswith("python:")


def test_compose_has_every_service() -> None:
    assert set(services()) >= {"postgres", "redis", "migrate", *APP_SERVICES}


def test_compose_builds_targets_of_the_one_dockerfile() -> None:
    built: set[str] = set()
    for name, service in services().items():
        if "build" not in service:
            continue
        build = service["build"]
        assert (REPO / build["context"]).resolve() == REPO, f"{name}: context is not the repo root"
        dockerfile = (REPO / build["context"] / build["dockerfile"]).resolve()
        assert dockerfile == DOCKERFILE, f"{name}: builds {dockerfile}"
        assert build.get("target") in stages(), f"{name}: no stage {build.get('target')}"
        # an image name always means the same target (so migrate and api share xstilts-api)
        image = service["image"].split(":")[0]
        assert image == IMAGES[build["target"]], f"{name}: tags {image} for {build['target']}"
        built.add(image)
    assert built == set(IMAGES.values())
    for role, image in IMAGE_OF_ROLE.items():
        assert services()[role]["image"].split(":")[0] == image, role
    assert compose_build_args("worker")["ACCELERATOR"] == "cuda"


def test_compose_dependencies_exist_and_can_be_met() -> None:
    for name, service in services().items():
        for dep, spec in service.get("depends_on", {}).items():
            assert dep in services(), f"{name} depends on unknown service {dep}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services()[dep], f"{name} waits for {dep}'s health"
            elif condition == "service_completed_successfully":
                assert services()[dep].get("restart") == "no", f"{dep} must run once"
            else:
                assert condition == "service_started", condition
    assert services()["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in APP_SERVICES:
        deps = services()[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        # the offline model is materialised once, before anything loads it
        assert deps["models"]["condition"] == "service_completed_successfully", name
        assert deps["redis"]["condition"] == "service_healthy", name


def test_compose_commands_are_the_contract() -> None:
    for name, command in COMMANDS.items():
        assert argv(services()[name]["command"]) == argv(command), name
    # a quoted "no": an unquoted no is YAML's false, which Compose rejects
    assert services()["migrate"]["restart"] == "no"


def test_compose_worker_reserves_a_gpu_and_time_to_checkpoint() -> None:
    worker = services()["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    grace = re.fullmatch(r"(\d+)(s|m)", worker["stop_grace_period"])
    assert grace, worker["stop_grace_period"]
    seconds = int(grace.group(1)) * (60 if grace.group(2) == "m" else 1)
    assert seconds >= 300
    for name in ("api", "eval", "scheduler", "migrate", "models"):
        assert "deploy" not in services()[name], f"{name} should not hold a GPU"


def test_compose_environment_follows_the_contract() -> None:
    password = services()["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert password.startswith("${POSTGRES_PASSWORD:?"), (
        "the password must be required, not defaulted"
    )
    for name in ("migrate", "models", *APP_SERVICES):
        env = services()[name]["environment"]
        for key, value in ENVIRONMENT.items():
            assert env.get(key) == value, f"{name}: {key}"
        url = DATABASE_URL.fullmatch(env["XSTILTS_DATABASE_URL"])
        assert url and url.group("password") == password, f"{name}: XSTILTS_DATABASE_URL"
        assert env["XSTILTS_ENV"].startswith("${XSTILTS_ENV:-"), name
        # only the API authenticates clients, so only it gets the key hashes
        assert ("XSTILTS_API_KEYS" in env) == (name == "api"), name
    assert services()["api"]["environment"]["XSTILTS_API_KEYS"].startswith("${XSTILTS_API_KEYS:?")


def mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """target -> {type, source, read_only} for both the short and the long volume syntax."""
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            kind = "volume" if not source.startswith((".", "/", "$")) else "bind"
            volume = {"type": kind, "source": source, "target": target, "read_only": mode == ["ro"]}
        out[volume["target"]] = volume
    return out


def test_compose_services_share_artifacts_cache_and_read_only_data() -> None:
    for name in APP_SERVICES:
        got = mounts(services()[name])
        for target, read_only in SHARED_MOUNTS.items():
            assert target in got, f"{name} does not mount {target}"
            assert bool(got[target].get("read_only")) == read_only, f"{name}: {target}"
        assert got["/artifacts"] == {
            "type": "volume",
            "source": "artifacts",
            "target": "/artifacts",
        }
        assert got["/cache"]["source"] == "cache"
        assert got["/data"]["type"] == "bind"
        assert got["/data"]["source"] == "${XSTILTS_DATA_DIR:-../shared/data}"


def test_compose_named_volumes_are_declared_and_used() -> None:
    used = {
        m["source"]
        for service in services().values()
        for m in mounts(service).values()
        if m["type"] == "volume"
    }
    declared = set(compose()["volumes"])
    assert declared >= {"artifacts", "cache", "pgdata"}
    assert used == declared
    assert mounts(services()["postgres"])["/var/lib/postgresql/data"]["source"] == "pgdata"


def test_compose_healthchecks_and_published_ports() -> None:
    # over TCP: on first start the image's server answers on the socket before the database exists
    pg_check = " ".join(argv(services()["postgres"]["healthcheck"]["test"]))
    assert "pg_isready -h 127.0.0.1" in pg_check
    assert argv(services()["redis"]["healthcheck"]["test"])[1:] == ["redis-cli", "ping"]
    api_check = " ".join(argv(services()["api"]["healthcheck"]["test"]))
    assert "urllib" in api_check and ":8000/healthz" in api_check
    # plain HTTP with bearer keys: on the host's loopback unless the operator says otherwise
    (published,) = services()["api"]["ports"]
    address, port, container_port = re.fullmatch(
        r"\$\{XSTILTS_API_ADDRESS:-([^}]+)\}:\$\{XSTILTS_API_PORT:-(\d+)\}:(\d+)", published
    ).groups()  # type: ignore[union-attr]
    assert (address, port, container_port) == ("127.0.0.1", "8000", "8000")
    exposed = [name for name, service in services().items() if service.get("ports")]
    assert exposed == ["api"], "only the API is published; Postgres and Redis stay internal"


def test_compose_data_stores_are_on_the_internal_network_only() -> None:
    networks = compose()["networks"]
    assert networks["backend"]["internal"] is True
    for name in ("postgres", "redis"):
        assert services()[name]["networks"] == ["backend"], name
    for name, service in services().items():
        if name not in ("postgres", "redis"):
            assert "backend" in service["networks"], f"{name} cannot reach Postgres or Redis"
            assert "network_mode" not in service, name


def hardened(service: dict[str, Any]) -> bool:
    return (
        service.get("read_only") is True
        and any(t.split(":")[0] == "/tmp" for t in service.get("tmpfs", []))
        and service.get("cap_drop") == ["ALL"]
        and "no-new-privileges:true" in service.get("security_opt", [])
    )


def test_compose_runs_xstilts_as_the_manifests_do() -> None:
    """Read-only root, a writable /tmp, no capabilities: what k8s/ sets, so that the compose check
    (scripts/compose-check.sh) proves the manifests' settings too."""
    for name in ("migrate", "models", *APP_SERVICES):
        assert hardened(services()[name]), name


def test_compose_models_service_prepares_the_offline_model_once() -> None:
    models = services()["models"]
    assert argv(models["command"]) == argv(COMMANDS["models"])
    assert models["restart"] == "no"
    assert mounts(models)["/cache"]["source"] == "cache"


# --- k8s/ --------------------------------------------------------------------------------------


@cache
def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@cache
def manifests() -> dict[str, tuple[dict[str, Any], ...]]:
    """Every manifest file in k8s/ (except kustomization.yaml) -> its objects."""
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs = tuple(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
            out[path.name] = docs
    return out


def applied() -> list[dict[str, Any]]:
    """The objects `kubectl apply -k k8s/` creates."""
    return [obj for name in kustomization()["resources"] for obj in manifests()[name]]


def find(kind: str, name: str) -> dict[str, Any]:
    hits = [o for o in applied() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} objects"
    return hits[0]


def workloads() -> Iterator[dict[str, Any]]:
    return (o for o in applied() if o["kind"] in ("Deployment", "StatefulSet", "Job"))


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1, workload["metadata"]["name"]
    return containers[0]


# Which contract command and image each xstilts workload runs.
K8S_WORKLOADS = {
    ("Job", "xstilts-migrate"): ("migrate", "xstilts-api"),
    ("Deployment", "xstilts-api"): ("api", "xstilts-api"),
    ("Deployment", "xstilts-worker"): ("worker", "xstilts-worker"),
    ("Deployment", "xstilts-scheduler"): ("scheduler", "xstilts-eval"),
    ("Deployment", "xstilts-eval"): ("eval", "xstilts-eval"),
}


def test_kustomization_lists_existing_files_and_every_manifest() -> None:
    resources = kustomization()["resources"]
    assert len(resources) == len(set(resources))
    for name in resources:
        assert (K8S / name).is_file(), f"kustomization.yaml lists missing {name}"
    # the Secret is created by hand, never applied from the repository
    assert set(manifests()) - set(resources) == {"secret.example.yaml"}


def test_every_object_is_identified_and_labelled() -> None:
    seen = set()
    for filename, objects in manifests().items():
        assert objects, f"{filename} is empty"
        for obj in objects:
            where = f"{filename}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
            assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name"), where
            labels = obj["metadata"].get("labels", {})
            assert labels.get("app.kubernetes.io/name"), where
            assert labels.get("app.kubernetes.io/part-of") == "xstilts", where
            key = (obj["kind"], obj["metadata"]["name"])
            assert key not in seen, f"{where}: defined twice"
            seen.add(key)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_objects_validate_against_the_kubernetes_schemas(version: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="Kubernetes schemas ship with it")
    unchecked, errors = [], []
    for filename, objects in manifests().items():
        for obj in objects:
            try:
                kv.validate(obj, version, strict=True)
            except kv.SchemaNotFoundError:
                unchecked.append((obj["apiVersion"], obj["kind"]))
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                errors.append(
                    f"{filename} {obj['kind']}/{obj['metadata']['name']}: {path}: {e.message}"
                )
    assert not errors, errors
    # Only the KEDA custom resources have no built-in schema: a typo in a core kind is not skipped.
    assert set(unchecked) == {("keda.sh/v1alpha1", "ScaledObject")}


def test_workload_selectors_match_their_pods_and_services_find_them() -> None:
    for workload in workloads():
        if workload["kind"] != "Job":
            selector = workload["spec"]["selector"]["matchLabels"]
            labels = workload["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= labels.items(), workload["metadata"]["name"]
    for service in (o for o in applied() if o["kind"] == "Service"):
        name = service["metadata"]["name"]
        selected = [
            w
            for w in workloads()
            if service["spec"]["selector"].items()
            <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, f"Service {name} selects {len(selected)} workloads"
        ports = container(selected[0]).get("ports", [])
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert any(target in (p.get("name"), p["containerPort"]) for p in ports), (name, target)


def test_containers_have_images_resources_and_probe_ports() -> None:
    for workload in workloads():
        for c in pod_spec(workload)["containers"]:
            where = f"{workload['metadata']['name']}/{c['name']}"
            assert c.get("image"), where
            assert c.get("resources", {}).get("requests"), f"{where}: no resource requests"
            assert c["resources"].get("limits", {}).get("memory"), f"{where}: no memory limit"
            for amounts in c["resources"].values():
                for resource, amount in amounts.items():
                    assert QUANTITY.fullmatch(str(amount)), f"{where}: {resource}: {amount!r}"
            ports = {p.get("name") for p in c.get("ports", [])} | {
                p["containerPort"] for p in c.get("ports", [])
            }
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                handler = c.get(probe, {})
                for kind in ("httpGet", "tcpSocket", "grpc"):
                    if kind in handler:
                        assert handler[kind]["port"] in ports, f"{where}: {probe} port"


def test_storage_sizes_are_quantities() -> None:
    sizes = [
        o["spec"]["resources"]["requests"]["storage"]
        for o in applied()
        if o["kind"] == "PersistentVolumeClaim"
    ]
    for workload in workloads():
        sizes += [
            t["spec"]["resources"]["requests"]["storage"]
            for t in workload["spec"].get("volumeClaimTemplates", [])
        ]
        sizes += [
            v["emptyDir"]["sizeLimit"]
            for v in pod_spec(workload).get("volumes", [])
            if (v.get("emptyDir") or {}).get("sizeLimit")
        ]
    assert len(sizes) >= 4
    for size in sizes:
        assert QUANTITY.fullmatch(str(size)), size


def test_references_resolve() -> None:
    configmaps = {o["metadata"]["name"]: o["data"] for o in applied() if o["kind"] == "ConfigMap"}
    (secret,) = manifests()["secret.example.yaml"]
    secrets = {secret["metadata"]["name"]: secret["stringData"]}
    claims = {o["metadata"]["name"] for o in applied() if o["kind"] == "PersistentVolumeClaim"}
    for workload in workloads():
        spec = pod_spec(workload)
        where = workload["metadata"]["name"]
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, where
        for c in spec["containers"] + spec.get("initContainers", []):
            for source in c.get("envFrom", []):
                ref = source.get("configMapRef") or source["secretRef"]
                assert ref["name"] in (configmaps if "configMapRef" in source else secrets), where
            for env in c.get("env", []):
                ref = env.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    assert (
                        ref["configMapKeyRef"]["key"] in configmaps[ref["configMapKeyRef"]["name"]]
                    )
                if "secretKeyRef" in ref:
                    assert ref["secretKeyRef"]["key"] in secrets[ref["secretKeyRef"]["name"]], where
            declared = {v["name"] for v in spec.get("volumes", [])}
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in declared or any(
                    t["metadata"]["name"] == mount["name"]
                    for t in workload["spec"].get("volumeClaimTemplates", [])
                ), f"{where}: mounts undeclared volume {mount['name']}"


def test_configmap_carries_the_contract_settings() -> None:
    data = find("ConfigMap", "xstilts-config")["data"]
    for key, value in ENVIRONMENT.items():
        assert data[key] == value, key
    assert data["XSTILTS_ENV"] in ("development", "production")
    # the hosts in the URLs are the Services of this kustomization
    assert find("Service", "redis")["spec"]["ports"][0]["port"] == 6379
    assert find("Service", "postgres")["spec"]["ports"][0]["port"] == 5432
    assert data["POSTGRES_USER"] == data["POSTGRES_DB"] == "xstilts"


@pytest.mark.parametrize(("kind", "name"), sorted(K8S_WORKLOADS))
def test_xstilts_workloads_follow_the_contract(kind: str, name: str) -> None:
    role, image = K8S_WORKLOADS[(kind, name)]
    workload = find(kind, name)
    c = container(workload)
    assert c["command"] == argv(COMMANDS[role])
    assert c["image"] == image
    assert image in {i["name"] for i in kustomization()["images"]}
    # the same image as docker compose runs for this role
    assert services()[role]["image"].split(":")[0] == image
    # the password reaches the URL by $(VAR) expansion, which only sees variables defined earlier
    env = [e["name"] for e in c["env"]]
    url = next(e["value"] for e in c["env"] if e["name"] == "XSTILTS_DATABASE_URL")
    match = DATABASE_URL.fullmatch(url)
    assert match and match.group("password") == "$(POSTGRES_PASSWORD)"
    assert env.index("POSTGRES_PASSWORD") < env.index("XSTILTS_DATABASE_URL")
    assert {"configMapRef": {"name": "xstilts-config"}} in c["envFrom"]
    assert ("XSTILTS_API_KEYS" in env) == (role == "api"), "only the API gets the key hashes"
    # runs as the user the image was built for
    context = pod_spec(workload)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == image_user_uid(image)
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    if role in APP_SERVICES:
        got = {m["mountPath"]: bool(m.get("readOnly")) for m in c["volumeMounts"]}
        for path, read_only in SHARED_MOUNTS.items():
            assert got.get(path) == read_only, f"{name}: {path}"


def test_api_probes_use_the_health_endpoints() -> None:
    c = container(find("Deployment", "xstilts-api"))
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    port = c["readinessProbe"]["httpGet"]["port"]
    assert next(p for p in c["ports"] if p.get("name") == port)["containerPort"] == 8000


def test_worker_gets_a_gpu_node_and_time_to_checkpoint() -> None:
    worker = find("Deployment", "xstilts-worker")
    spec = pod_spec(worker)
    c = container(worker)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"], "GPU workers need a GPU node selector"
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert spec["terminationGracePeriodSeconds"] >= 300
    probe = " ".join(c["livenessProbe"]["exec"]["command"])
    assert "services.worker.main inspect ping" in probe
    # a rollout must not need a GPU more than the workers already hold
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    for name in ("xstilts-api", "xstilts-eval", "xstilts-scheduler"):
        limits = container(find("Deployment", name))["resources"].get("limits", {})
        assert "nvidia.com/gpu" not in limits, name


def test_migration_job_prepares_the_offline_model_first() -> None:
    """The init container is compose's service "models": the same command, image and settings."""
    job = find("Job", "xstilts-migrate")
    (init,) = pod_spec(job)["initContainers"]
    assert init["command"] == argv(COMMANDS["models"])
    assert init["image"] == IMAGE_OF_ROLE["models"] == services()["models"]["image"].split(":")[0]
    assert init["envFrom"] == container(job)["envFrom"] and init["env"] == container(job)["env"]
    cache = next(m for m in init["volumeMounts"] if m["mountPath"] == "/cache")
    volume = next(v for v in pod_spec(job)["volumes"] if v["name"] == cache["name"])
    assert volume["persistentVolumeClaim"]["claimName"] == "xstilts-cache"
    assert pod_spec(job)["securityContext"]["fsGroup"] == image_user_uid("xstilts-api")


@pytest.mark.parametrize(("kind", "name"), sorted(K8S_WORKLOADS))
def test_xstilts_pods_have_a_read_only_root_and_a_writable_tmp(kind: str, name: str) -> None:
    """As compose runs them (read_only, a /tmp tmpfs, no capabilities), which the compose check
    proves; HOME=/tmp comes from the ConfigMap."""
    spec = pod_spec(find(kind, name))
    for c in spec["containers"] + spec.get("initContainers", []):
        where = f"{name}/{c['name']}"
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, where
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], where
        tmp = next(m["name"] for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
        assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == tmp), where


def test_migration_job_and_single_scheduler() -> None:
    job = find("Job", "xstilts-migrate")
    assert pod_spec(job)["restartPolicy"] in ("OnFailure", "Never")
    scheduler = find("Deployment", "xstilts-scheduler")
    assert scheduler["spec"]["replicas"] == 1
    assert scheduler["spec"]["strategy"]["type"] == "Recreate", "two beats would double the ticks"


def test_scaled_objects_scale_the_queue_consumers() -> None:
    scaled = [o for o in applied() if o["kind"] == "ScaledObject"]
    namespace = kustomization()["namespace"]
    redis_port = find("Service", "redis")["spec"]["ports"][0]["port"]
    queues = {}
    for obj in scaled:
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        spec = obj["spec"]
        target = spec["scaleTargetRef"]
        assert target.get("kind", "Deployment") == "Deployment"
        deployment = find("Deployment", target["name"])
        assert "replicas" not in deployment["spec"], (
            "a scaled Deployment must leave replicas to KEDA"
        )
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        command = container(deployment)["command"]
        consumed = command[command.index("-Q") + 1]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "redis"
        metadata = trigger["metadata"]
        assert set(metadata) <= KEDA_REDIS_KEYS, set(metadata) - KEDA_REDIS_KEYS
        assert all(isinstance(v, str) for v in metadata.values()), (
            "KEDA metadata values are strings"
        )
        assert metadata["listName"] == consumed, target["name"]
        assert metadata["address"] == f"redis.{namespace}.svc.cluster.local:{redis_port}"
        assert int(metadata["listLength"]) >= 1
        queues[consumed] = target["name"]
    assert queues == {"gpu": "xstilts-worker", "eval": "xstilts-eval"}


def test_secret_example_is_complete_and_never_applied() -> None:
    (secret,) = manifests()["secret.example.yaml"]
    assert secret["kind"] == "Secret"
    assert secret["metadata"]["namespace"] == kustomization()["namespace"]
    assert "secret.example.yaml" not in kustomization()["resources"]
    data = secret["stringData"]
    assert set(data) == {"POSTGRES_PASSWORD", "XSTILTS_API_KEYS"}
    for pair in data["XSTILTS_API_KEYS"].split(","):
        assert re.fullmatch(r"[^:,]+:[0-9a-f]{64}", pair), pair
    assert find("Namespace", kustomization()["namespace"])


def test_documented_apply_order_runs_the_migration_before_the_services() -> None:
    """docs/deployment.md applies the migration first with a label selector: it must pick the Job
    and what it needs, and none of the services (which do not migrate at start-up)."""
    docs = (REPO / "docs" / "deployment.md").read_text()
    match = re.search(r"kubectl apply -k k8s/ -l '([\w./-]+) notin \(([^)]*)\)'", docs)
    assert match, "docs/deployment.md no longer applies the migration first"
    key, excluded = match.group(1), {v.strip() for v in match.group(2).split(",")}
    first = [o for o in applied() if o["metadata"].get("labels", {}).get(key) not in excluded]
    kinds = {(o["kind"], o["metadata"]["name"]) for o in first}
    assert ("Job", "xstilts-migrate") in kinds
    for needed in ("Namespace", "ConfigMap", "StatefulSet", "Service"):
        assert any(kind == needed for kind, _ in kinds), f"the first apply lacks a {needed}"
    images = set(TARGET_OF_IMAGE)
    for obj in first:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            assert container(obj)["image"] not in images, f"{obj['metadata']['name']} starts early"
        assert obj["kind"] != "ScaledObject", obj["metadata"]["name"]
