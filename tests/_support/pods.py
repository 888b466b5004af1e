"""A rendered pod's containers, run with podman as the kubelet would run them.

Each container gets exactly what the operator or the chart rendered: its command and args, env,
the user and group of the pod's and the container's securityContext, a read-only root filesystem
(podman's own /tmp and /run tmpfs are switched off, so only the rendered volumes are writable), the
dropped capabilities, no-new-privileges, podman's default seccomp profile (RuntimeDefault). Volumes:
an emptyDir becomes a tmpfs (mode 1777, its sizeLimit) or, when containers share it (an init
container filling it), a host directory; a PersistentVolumeClaim becomes the host directory that
stands in for the volume, mounted read-only where the pod says so.

Network: the operator container uses the host network (it reaches the test API server on
127.0.0.1); servers run in a network namespace of their own (slirp4netns: user-mode networking, no
bridge and no iptables rules on the host) with their ports published on 127.0.0.1 only.
"""

from __future__ import annotations

import re
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlsd_devcluster import images

from tests._support import free_port


def image_user(image: str) -> str:
    return images.podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()


def security_args(image: str, container: Mapping[str, Any], pod_security: Mapping[str, Any]) -> list[str]:
    context = {**pod_security, **container.get("securityContext", {})}
    args: list[str] = []
    uid, gid = context.get("runAsUser"), context.get("runAsGroup")
    if context.get("runAsNonRoot"):
        # The kubelet's check: the uid that will run, from the pod or else the image, must be a
        # non-zero number (a user name cannot be verified and is refused).
        user = str(uid) if uid is not None else image_user(image).split(":")[0]
        if not user.isdigit() or int(user) == 0:
            raise AssertionError(f"runAsNonRoot, but {image} would run as {user!r}: the kubelet refuses it")
    if uid is not None:
        args += ["--user", f"{uid}:{gid if gid is not None else uid}"]
    if context.get("fsGroup") is not None:
        args += ["--group-add", str(context["fsGroup"])]
    if context.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"]
    capabilities = context.get("capabilities", {})
    args += [f"--cap-drop={c.lower() if c == 'ALL' else c}" for c in capabilities.get("drop", [])]
    args += [f"--cap-add={c}" for c in capabilities.get("add", [])]
    if context.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt=no-new-privileges"]
    if context.get("privileged"):
        raise AssertionError("a privileged container was rendered")
    return args


def _size(limit: str | None) -> str:
    if not limit:
        return ""
    units = {"Ki": "k", "Mi": "m", "Gi": "g"}
    for suffix, short in units.items():
        if limit.endswith(suffix):
            return f",tmpfs-size={limit[: -len(suffix)]}{short}"
    return f",tmpfs-size={limit}"


def volume_args(container: Mapping[str, Any], volumes: Sequence[Mapping[str, Any]],
                host_paths: Mapping[str, Path]) -> list[str]:
    """`host_paths`: volume name -> host directory (PVCs, and emptyDirs containers share)."""
    by_name = {v["name"]: v for v in volumes}
    args: list[str] = []
    for mount in container.get("volumeMounts", []):
        volume = by_name[mount["name"]]
        read_only = mount.get("readOnly", False) or volume.get("persistentVolumeClaim", {}).get("readOnly", False)
        if mount["name"] in host_paths:
            args += ["--volume", f"{host_paths[mount['name']]}:{mount['mountPath']}:{'ro' if read_only else 'rw'}"]
        elif "emptyDir" in volume:
            args += ["--mount", f"type=tmpfs,destination={mount['mountPath']},tmpfs-mode=1777"
                     + _size(volume["emptyDir"].get("sizeLimit"))]
        else:
            raise AssertionError(f"volume {mount['name']} ({sorted(volume)}) has no stand-in: pass host_paths")
    return args


def env_args(container: Mapping[str, Any], extra: Mapping[str, str] | None = None) -> list[str]:
    args = []
    for var in container.get("env", []):
        if "value" not in var:
            raise AssertionError(f"env {var['name']} comes from {sorted(var)}: no stand-in here")
        args += ["--env", f"{var['name']}={var['value']}"]
    for name, value in (extra or {}).items():
        args += ["--env", f"{name}={value}"]
    return args


@dataclass
class Container:
    """A started container; `published` maps container ports to 127.0.0.1 ports."""

    name: str
    published: dict[int, int] = field(default_factory=dict)

    def logs(self) -> str:
        result = images.podman("logs", self.name, check=False)
        return (result.stdout + result.stderr)[-6000:]

    def state(self) -> tuple[str, int]:
        result = images.podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", self.name, check=False)
        if result.returncode != 0:
            return "gone", -1
        status, code = result.stdout.split()
        return status, int(code)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, code = self.state()
            if status in ("exited", "stopped"):
                return code
            time.sleep(0.5)
        raise AssertionError(f"{self.name} still running after {timeout:.0f}s:\n{self.logs()}")

    def url(self, port: int, path: str = "") -> str:
        return f"http://127.0.0.1:{self.published[port]}{path}"

    def wait_http(self, port: int, path: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, code = self.state()
            if status in ("exited", "stopped", "gone"):
                raise AssertionError(f"{self.name} exited ({code}) before {path} answered:\n{self.logs()}")
            try:
                with urllib.request.urlopen(self.url(port, path), timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"{self.name}: {path} not answering after {timeout:.0f}s:\n{self.logs()}")

    def stop(self) -> None:
        images.podman("rm", "--force", "--time", "10", self.name, check=False)


def run_args(image: str, container: Mapping[str, Any], *, name: str, pod_security: Mapping[str, Any],
             volumes: Sequence[Mapping[str, Any]] = (), host_paths: Mapping[str, Path] | None = None,
             host_network: bool = False, published: Mapping[int, int] | None = None,
             extra_env: Mapping[str, str] | None = None, extra_mounts: Sequence[str] = (),
             replace: Mapping[str, str] | None = None) -> list[str]:
    """`podman run` arguments (after `podman <store options>`) for a rendered container.

    `replace` substitutes text in args (KServe's `{{.Name}}` template, which its controller fills,
    or a port moved to a free one on the host network)."""
    args = ["run", "--name", name, "--pull=never",
            *security_args(image, container, pod_security),
            *volume_args(container, volumes, host_paths or {}),
            *env_args(container, extra_env), *extra_mounts]
    if host_network:
        args += ["--network=host"]
    else:
        args += ["--network=slirp4netns:allow_host_loopback=false",
                 *(f"--publish=127.0.0.1:{host}:{port}" for port, host in (published or {}).items())]
    # The kubelet expands $(VAR) in command and args from the container's env.
    env = {var["name"]: var["value"] for var in container.get("env", []) if "value" in var} | dict(extra_env or {})
    command = [_expand(a, env) for a in container.get("command", [])]
    rendered_args = [_expand(_substitute(a, replace or {}), env) for a in container.get("args", [])]
    if command:
        return [*args, "--entrypoint", command[0], image, *command[1:], *rendered_args]
    return [*args, image, *rendered_args]


def _expand(arg: str, env: Mapping[str, str]) -> str:
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def run(image: str, container: Mapping[str, Any], **kwargs: Any) -> Container:
    """Starts `container` (a rendered container dict) from `image`, detached, its ports published
    on free 127.0.0.1 ports (see `run_args` for the keywords)."""
    name = f"mlsd-test-{container['name']}-{uuid.uuid4().hex[:8]}"
    published = {p["containerPort"]: free_port() for p in container.get("ports", [])}
    args = run_args(image, container, name=name, published=published, **kwargs)
    result = images.podman(args[0], "--detach", *args[1:], check=False)
    if result.returncode != 0:
        raise AssertionError(f"podman run failed ({result.returncode}): {result.stderr[-3000:]}")
    return Container(name, {} if kwargs.get("host_network") else published)


def _substitute(arg: str, replace: Mapping[str, str]) -> str:
    for old, new in replace.items():
        arg = arg.replace(old, new)
    return arg


def run_to_completion(image: str, container: Mapping[str, Any], timeout: float = 180, **kwargs: Any) -> str:
    """Runs an init-style container; returns its logs, fails the test on a non-zero exit."""
    started = run(image, container, **kwargs)
    try:
        code = started.wait(timeout)
        logs = started.logs()
        assert code == 0, f"{container['name']} exited {code}:\n{logs}"
        return logs
    finally:
        started.stop()


def build_or_fail(names: Sequence[str] = ()) -> dict[str, str]:
    """Builds (or finds unchanged) the named images, all by default: name -> reference. A missing
    image tool or a failed build fails the test naming the install step or the build log."""
    import pytest

    for tool in ("buildah", "podman", "mmdebstrap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: {images.TOOLS_HINT}", pytrace=False)
    info = images.podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False)
    if info.returncode != 0:
        pytest.fail(f"podman cannot run containers here: {info.stderr[-2000:]}", pytrace=False)
    # Containers a killed earlier run left behind (they hold ports and memory).
    leftovers = images.podman("ps", "--all", "--quiet", "--filter", "name=^mlsd-test-", check=False).stdout.split()
    if leftovers:
        images.podman("rm", "--force", "--time", "2", *leftovers, check=False)
    try:
        results = images.build(names)
    except (images.ImageToolsMissing, images.ImageBuildFailed) as err:
        pytest.fail(str(err), pytrace=False)
    return {result.image.name: result.image.ref for result in results}
