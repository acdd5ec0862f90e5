"""Unit tests of the Python SDK, run on the build machine's Python against
the bindings componentize-py generates (see ../run-tests.sh): the generated
import functions are replaced by fakes, so every wrapper is exercised
without a host."""

from __future__ import annotations

import datetime
import json
import unittest
from dataclasses import dataclass, field
from unittest import mock

from componentize_py_types import Err
from wit_world.imports import http as wit_http
from wit_world.imports import shell as wit_shell
from wit_world.imports import storage as wit_storage
from wit_world.imports import types

import cairn_guest as cairn
from cairn_guest import Description, Param, http, shell, state, storage


class ErrorMapping(unittest.TestCase):
    def test_host_errors_become_sdk_exceptions_with_their_case(self):
        cases = {
            types.Error_Denied: cairn.Denied,
            types.Error_Invalid: cairn.Invalid,
            types.Error_NotFound: cairn.NotFound,
            types.Error_Limit: cairn.Limit,
            types.Error_Unsupported: cairn.Unsupported,
            types.Error_Failed: cairn.Failed,
        }
        for wit_case, exception in cases.items():
            with mock.patch.object(wit_http, "send", side_effect=Err(wit_case("why"))):
                with self.assertRaises(exception) as raised:
                    http.get("http://127.0.0.1:1/")
                self.assertEqual(str(raised.exception), "why")
                self.assertIsInstance(raised.exception, cairn.Error)

    def test_exports_return_the_wit_case_of_what_they_raise(self):
        class Refuses(cairn.Task):
            def describe(self):
                return Description("refuses", "0.1.0")

            def backup(self, ctx):
                raise cairn.Invalid("bad url")

            def restore(self, ctx):
                return http.get("http://x/").json()

        world = cairn.export_task(Refuses)()
        ctx = types.Context(job="j", run_id="r", params="{}", snapshot="s")
        with self.assertRaises(Err) as raised:
            world.backup(ctx)
        self.assertEqual(raised.exception.value, types.Error_Invalid("bad url"))

        # A host error that is not caught keeps its case and message.
        denied = Err(types.Error_Denied("http to http://x is not granted"))
        with mock.patch.object(wit_http, "send", side_effect=denied):
            with self.assertRaises(Err) as raised:
                world.restore(ctx)
        self.assertEqual(raised.exception.value, types.Error_Denied("http to http://x is not granted"))
        self.assertEqual(world.forget(ctx), "null")

    def test_plain_exceptions_are_failed_with_their_message_chain(self):
        class Buggy(cairn.Function):
            def describe(self):
                return Description("buggy", "0.1.0")

            def call(self, params):
                try:
                    params["missing"]
                except KeyError as e:
                    raise RuntimeError("lookup failed") from e

        with mock.patch("cairn_guest.log.debug") as debug:
            with self.assertRaises(Err) as raised:
                cairn.export_function(Buggy)().call("{}")
        self.assertEqual(
            raised.exception.value, types.Error_Failed("lookup failed: missing key 'missing'")
        )
        self.assertIn("Traceback", debug.call_args[0][0])

    def test_bad_params_json_and_non_json_results(self):
        class Echo(cairn.Function):
            def describe(self):
                return Description("echo", "0.1.0")

            def call(self, params):
                return params if params != "set" else {1, 2}

        world = cairn.export_function(Echo)()
        self.assertEqual(world.call('{"a": [1, 2]}'), '{"a": [1, 2]}')
        with self.assertRaises(Err) as raised:
            world.call("{nope")
        self.assertIsInstance(raised.exception.value, types.Error_Invalid)
        with self.assertRaises(Err) as raised:
            world.call('"set"')
        self.assertIsInstance(raised.exception.value, types.Error_Failed)
        self.assertIn("not JSON", raised.exception.value.value)

    def test_context_keeps_the_case(self):
        error = cairn.NotFound("no artifact `x`").context("cannot restore")
        self.assertIsInstance(error, cairn.NotFound)
        self.assertEqual(str(error), "cannot restore: no artifact `x`")


class Describe(unittest.TestCase):
    def test_description_converts_to_wit(self):
        class T(cairn.Task):
            def describe(self):
                return (
                    Description("x", "0.1.0")
                    .summary("s")
                    .param(Param.required("url", "u"))
                    .param(Param.optional("batch", "b", 100))
                    .param(Param.optional("ping-url", "p"))
                    .needs_http("{url}")
                    .needs_command("pg_dump")
                    .needs_path("{path}")
                    .needs_secret("token")
                    .needs_function("http-request")
                )

        d = cairn.export_task(T)().describe()
        self.assertEqual(d.name, "x")
        self.assertEqual(d.summary, "s")
        self.assertEqual([p.required for p in d.params], [True, False, False])
        self.assertEqual(d.params[1].default, "100")
        self.assertIsNone(d.params[2].default)
        self.assertEqual(d.needs, types.Needs(
            http=["{url}"], commands=["pg_dump"], paths=["{path}"],
            secrets=["token"], functions=["http-request"],
        ))


@dataclass
class Params:
    url: str
    restore_command: list[str] = field(default_factory=lambda: ["cat"])
    batch: int = 100
    ratio: float | None = None


class ParamsTests(unittest.TestCase):
    def test_params_as_dataclass(self):
        ctx = cairn.Context("j", "r", {"url": "http://x", "restore-command": ["tee", "/t"], "ratio": 1})
        p = ctx.params_as(Params)
        self.assertEqual((p.url, p.restore_command, p.batch, p.ratio), ("http://x", ["tee", "/t"], 100, 1))

    def test_params_errors_name_the_field(self):
        def error(params):
            with self.assertRaises(cairn.Invalid) as raised:
                cairn.from_params(params, Params)
            return str(raised.exception)

        self.assertEqual(error({}), "invalid params: missing field `url`")
        self.assertEqual(error({"url": 3}), "invalid params: `url` must be a string, got number 3")
        self.assertEqual(error({"url": "u", "batch": True}), "invalid params: `batch` must be an integer, got a boolean")
        self.assertEqual(error({"url": "u", "restore-command": ["a", 1]}),
                         "invalid params: `restore-command`[1] must be a string, got number 1")
        self.assertTrue(error({"url": "u", "urll": 1}).startswith("invalid params: unknown field `urll`"))
        self.assertEqual(cairn.from_params({"url": "u", "x": 1}, Params, allow_unknown=True).url, "u")

    def test_context_params_must_be_an_object(self):
        with self.assertRaises(cairn.Invalid):
            cairn.Context("j", "r", "[1]").params


class Capabilities(unittest.TestCase):
    def test_http_request_and_response(self):
        sent = []

        def send(request):
            sent.append(request)
            return wit_http.Response(status=500, headers=[wit_http.Header("Content-Type", "text/plain")], body=b"boom")

        with mock.patch.object(wit_http, "send", side_effect=send):
            response = http.Request.post("http://127.0.0.1:1/x").header("X-A", "1").json({"a": 1}).timeout(2.5).send()
        request = sent[0]
        self.assertEqual(request.method, wit_http.Method.POST)
        self.assertEqual(request.body, b'{"a": 1}')
        self.assertEqual(request.timeout_ms, 2500)
        self.assertEqual([h.name for h in request.headers], ["X-A", "Content-Type"])
        self.assertEqual(response.header("content-type"), "text/plain")
        with self.assertRaises(cairn.Failed) as raised:
            response.raise_for_status()
        self.assertEqual(str(raised.exception), "POST http://127.0.0.1:1/x returned 500: boom")
        with self.assertRaises(cairn.Invalid):
            http.Request("FETCH", "http://x")

    def test_shell_output_check(self):
        output = wit_shell.Output(exit_code=2, stdout=b"out\n", stderr=b"warming up\nno such database\n\n",
                                  stdout_truncated=False, stderr_truncated=False)
        with mock.patch.object(wit_shell, "run", return_value=output) as run:
            result = shell.Command("pg_dump", "-Fc").args(["-d", "app"]).env("PGPASSWORD", "{{secret:pg}}").timeout(2).run()
        command, stdin = run.call_args[0]
        self.assertEqual((command.program, command.args, command.env, command.timeout_ms, stdin),
                         ("pg_dump", ["-Fc", "-d", "app"], [("PGPASSWORD", "{{secret:pg}}")], 2000, None))
        with self.assertRaises(cairn.Failed) as raised:
            result.check()
        self.assertEqual(str(raised.exception), "command `pg_dump` exited with code 2: no such database")

    def test_storage_writer_buffers_and_reader_is_a_file(self):
        written = []

        class FakeWriter:
            def write(self, data):
                written.append(data)

            def finish(self):
                return wit_storage.Artifact("a.json", wit_storage.ArtifactKind.STREAM, sum(map(len, written)))

            def __exit__(self, *exc):
                pass

        with mock.patch.object(wit_storage, "create", return_value=FakeWriter()):
            with storage.create("a.json") as out:
                json.dump({"k": "v" * 10}, out)
        self.assertEqual(b"".join(written), b'{"k": "' + b"v" * 10 + b'"}')

        chunks = [b'{"a": ', b"[1, 2]}", b""]

        class FakeReader:
            def read(self, max):
                return chunks.pop(0)

            def __exit__(self, *exc):
                pass

        with mock.patch.object(wit_storage, "open", return_value=FakeReader()):
            with storage.open("a.json") as f:
                self.assertEqual(json.load(f), {"a": [1, 2]})

    def test_state_json(self):
        store = {}
        with mock.patch.object(state._wit, "get", side_effect=store.get), \
                mock.patch.object(state._wit, "set", side_effect=store.__setitem__):
            self.assertEqual(state.get_json("runs", 0), 0)
            state.set_json("runs", 3)
            self.assertEqual(state.get_json("runs"), 3)
            store["bad"] = "{"
            with self.assertRaises(cairn.Failed):
                state.get_json("bad")


class Helpers(unittest.TestCase):
    def test_format_size(self):
        self.assertEqual(cairn.format_size(512), "512 B")
        self.assertEqual(cairn.format_size(1536), "1.5 KiB")
        self.assertEqual(cairn.format_size(3 << 20), "3.0 MiB")

    def test_parse_duration(self):
        td = datetime.timedelta
        self.assertEqual(cairn.parse_duration("1m30s"), td(seconds=90))
        self.assertEqual(cairn.parse_duration("250ms"), td(milliseconds=250))
        self.assertEqual(cairn.parse_duration("90"), td(seconds=90))
        self.assertEqual(cairn.parse_duration("2H"), td(hours=2))
        self.assertEqual(cairn.parse_duration("1m 30s"), td(seconds=90))
        for bad, why in [("5 minutes", "unknown unit `minutes`"), ("30s5m", "largest first"), ("", "empty")]:
            with self.assertRaises(cairn.Invalid) as raised:
                cairn.parse_duration(bad)
            self.assertIn(why, str(raised.exception))


if __name__ == "__main__":
    unittest.main()
