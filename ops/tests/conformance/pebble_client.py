"""Drive a Pebble API server with the real Python client, ops.pebble.Client.

Usage: pebble_client.py <socket> <scenario>

Each scenario asserts on what the client returns (with messages that say
what differed) and prints a JSON summary on stdout for the Rust test to
check as well. The exit status is non-zero on the first mismatch.
"""

import json
import sys

import ops.pebble as pebble


def expect(actual, expected, what):
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def expect_raises(exc_type, fn, what):
    try:
        fn()
    except exc_type as e:
        return e
    raise AssertionError(f"{what}: expected {exc_type.__name__}, nothing raised")


def layers_and_services(c):
    expect(c.get_system_info().version, "v1.32.1", "system-info version")
    c.add_layer(
        "base",
        {
            "summary": "base layer",
            "services": {
                "web": {
                    "override": "replace",
                    "command": "/bin/web --port 8080",
                    "startup": "enabled",
                    "environment": {"PORT": "8080"},
                },
                "side": {"override": "replace", "command": "/bin/side"},
            },
            "checks": {
                "up": {"override": "replace", "level": "alive", "period": "90s", "http": {"url": "http://localhost:8080/"}},
            },
        },
    )
    plan = c.get_plan()
    expect(plan.services["web"].command, "/bin/web --port 8080", "plan web command")
    expect(plan.services["web"].environment, {"PORT": "8080"}, "plan web environment")
    expect(plan.checks["up"].threshold, 3, "plan check threshold default")
    expect(plan.checks["up"].period, "1m30s", "plan check period in Go form")
    c.add_layer("base", {"services": {"web": {"override": "merge", "environment": {"MODE": "prod"}}}}, combine=True)
    merged = c.get_plan().services["web"].environment
    expect(merged, {"PORT": "8080", "MODE": "prod"}, "merged environment")
    err = expect_raises(pebble.APIError, lambda: c.add_layer("base", {"services": {}}), "re-adding a label")
    expect((err.code, err.message), (400, 'layer "base" already exists'), "duplicate layer error")
    err = expect_raises(pebble.APIError, lambda: c.add_layer("x", "services: {s: {command: y}}"), "layer without override")
    expect(err.message, 'layer "x" must define "override" for service "s"', "override error")

    change_id = c.replan_services()
    change = c.get_change(change_id)
    expect((change.kind, change.status, change.ready, change.err), ("replan", "Done", True, None), "replan change")
    states = {s.name: s.current.value for s in c.get_services()}
    expect(states, {"side": "inactive", "web": "active"}, "after replan")
    expect([s.is_running() for s in c.get_services(["web"])], [True], "web is running")
    expect([s.startup.value for s in c.get_services(["side"])], ["disabled"], "side startup")
    c.start_services(["side"])
    c.stop_services(["web"])
    states = {s.name: s.current.value for s in c.get_services()}
    expect(states, {"side": "active", "web": "inactive"}, "after start/stop")
    c.restart_services(["web", "side"])
    states = {s.name: s.current.value for s in c.get_services()}
    expect(states, {"side": "active", "web": "active"}, "after restart")
    err = expect_raises(pebble.APIError, lambda: c.start_services(["nope"]), "starting an unknown service")
    expect((err.code, err.message), (400, 'cannot start services: service "nope" does not exist'), "unknown service")
    checks = [(ch.name, ch.status.value, ch.level.value, ch.threshold) for ch in c.get_checks()]
    expect(checks, [("up", "up", "alive", 3)], "checks")
    changes = [ch.kind for ch in c.get_changes(select=pebble.ChangeState.ALL)]
    return {"plan": c.get_plan().to_dict(), "services": states, "change_kinds": changes}


def files(c):
    c.push("/etc/app/config.yaml", "a: 1\n", make_dirs=True, permissions=0o640, user="_daemon_")
    with c.pull("/etc/app/config.yaml") as f:
        expect(f.read(), "a: 1\n", "pulled text")
    blob = b"\x00\xff\r\n--not-a-boundary\r\n\x01"
    c.push("/data/blob.bin", blob, make_dirs=True)
    with c.pull("/data/blob.bin", encoding=None) as f:
        expect(f.read(), blob, "pulled bytes")
    [info] = c.list_files("/etc/app")
    expect(
        (info.path, info.name, info.type, info.size, info.permissions, info.user, info.user_id, info.group),
        ("/etc/app/config.yaml", "config.yaml", pebble.FileType.FILE, 5, 0o640, "_daemon_", 584792, "_daemon_"),
        "listed file",
    )
    expect([i.name for i in c.list_files("/etc", pattern="a*")], ["app"], "pattern listing")
    expect([i.type for i in c.list_files("/etc/app", itself=True)], [pebble.FileType.DIRECTORY], "itself listing")
    c.make_dir("/srv/data", make_parents=True, permissions=0o750)
    err = expect_raises(pebble.PathError, lambda: c.make_dir("/srv/data"), "making an existing directory")
    expect((err.kind, err.message), ("generic-file-error", "mkdir /srv/data: file exists"), "mkdir error")
    err = expect_raises(pebble.PathError, lambda: c.pull("/nope"), "pulling a missing file")
    expect((err.kind, err.message), ("not-found", "open /nope: no such file or directory"), "pull error")
    err = expect_raises(pebble.PathError, lambda: c.remove_path("/srv"), "removing a non-empty directory")
    expect((err.kind, err.message), ("generic-file-error", "remove /srv: directory not empty"), "remove error")
    c.remove_path("/etc/app", recursive=True)
    err = expect_raises(pebble.APIError, lambda: c.list_files("/etc/app"), "listing a removed directory")
    expect((err.code, err.message), (404, "stat /etc/app: no such file or directory"), "list error")
    return {"srv": [(i.name, oct(i.permissions)) for i in c.list_files("/srv")]}


def exec_(c):
    out, err = c.exec(["echo", "hello"]).wait_output()
    expect((out, err), ("hello\n", "warning: echo\n"), "echo output")
    out, err = c.exec(["echo", "hello"], combine_stderr=True).wait_output()
    expect((out, err), ("hello\nwarning: echo\n", None), "combined output")
    out, _ = c.exec(
        ["psql", "-f", "-"], stdin="SELECT 1;", environment={"PGPASSWORD": "pw"}, working_dir="/", timeout=10
    ).wait_output()
    expect(out, "1\n", "psql output")
    err = expect_raises(pebble.ExecError, lambda: c.exec(["fail2"]).wait_output(), "exit status 2 with output")
    expect((err.exit_code, err.stdout, err.stderr), (2, "", "bad thing\n"), "ExecError from wait_output")
    err = expect_raises(pebble.ExecError, lambda: c.exec(["fail2", "again"]).wait(), "exit status 2 with wait")
    expect(err.exit_code, 2, "ExecError from wait")
    err = expect_raises(pebble.APIError, lambda: c.exec(["nothere"]), "an unknown executable")
    expect((err.code, err.message), (400, 'cannot find executable "nothere"'), "exec API error")
    return {"exit_code": 2}


SCENARIOS = {"layers-and-services": layers_and_services, "files": files, "exec": exec_}

if __name__ == "__main__":
    socket_path, scenario = sys.argv[1], sys.argv[2]
    client = pebble.Client(socket_path=socket_path)
    print(json.dumps(SCENARIOS[scenario](client)))
