"""The load generator: a process of its own, so that its CPU is measured apart from the stack's.

    python -m benchmarks.loadgen SPEC.json RESULT.json

It speaks HTTP/1.1 on bare non-blocking sockets driven by asyncio's sock_* calls (no HTTP
library: parsing a status line, the headers and a Content-Length or chunked body is all it
needs, and it costs a fraction of what http.client, httpx or asyncio streams cost per
request). A connection is kept alive when the server allows
it; gunicorn's sync workers answer `Connection: close`, so then every request opens a new
one, as every real client of such a server does.

Two shapes of load (SPEC["mode"]):
  * "closed": `concurrency` clients, each sends a request, waits for the answer, thinks
    `think_ms`, and again, until `duration` is over. Latency is send -> last byte.
  * "open": requests are due at a fixed rate, `rate` per second, whatever the server does;
    each is sent at its due time on a free connection (a new one if none is free, up to
    `max_connections`). Latency is measured from the DUE time, so a server that falls behind
    shows it in the latency instead of silently slowing the load (no coordinated omission).
    A request still waiting for a connection `timeout` s after its due time is given up
    unsent, as a client with that timeout would.

What is requested (SPEC["requests"]):
  * {"kind": "transfer", "key_prefix", "currency", "pattern": "pair"|"random"|"hot", ...}:
    POST /transfers, every request with its own idempotency key `<key_prefix>-<n>`.
      pair:   two accounts, each client pays one to the other, in a random direction;
      random: two distinct accounts drawn from `accounts`;
      hot:    client i pays `hot` from `sources[i % len(sources)]`.
  * {"kind": "batch", "key_prefix", "currency", "accounts", "size", "atomic"}: POST
    /transfers/batch of `size` transfers between two distinct accounts drawn from `accounts`,
    each with its own idempotency key `<key_prefix>-<n>-<i>`.
  * {"kind": "get", "paths": [...]}: GET each path in turn.

The result holds every latency (ms, by outcome), the count of each outcome class
("201", "422 insufficient_funds", "conn ConnectionResetError", ...), the wall-clock times of
the first send and the last answer, and this process's own CPU time.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import socket
import sys
import time
from collections import Counter
from typing import Any


class HttpError(Exception):
    pass


def _parse(buf: bytearray, head_end: int, meta: dict) -> int | None:
    """Given the header block (ending at head_end), the end offset of the whole response in
    `buf`, or None while incomplete. Fills meta: status, keep_alive, body slice."""
    if "status" not in meta:
        lines = bytes(buf[:head_end]).split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HttpError(f"bad status line {lines[0][:80]!r}")
        meta["status"] = int(parts[1])
        keep_alive = parts[0] == b"HTTP/1.1"
        meta["length"] = None
        meta["chunked"] = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                meta["length"] = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                meta["chunked"] = True
            elif name == b"connection":
                token = value.strip().lower()
                keep_alive = token == b"keep-alive" or (keep_alive and token != b"close")
        meta["keep_alive"] = keep_alive
    body_start = head_end + 4
    if meta["chunked"]:
        body = bytearray()
        at = body_start
        while True:
            line_end = buf.find(b"\r\n", at)
            if line_end < 0:
                return None
            size = int(bytes(buf[at:line_end]).split(b";")[0], 16)
            if size == 0:
                if len(buf) < line_end + 4:
                    return None
                meta["body"] = bytes(body)
                return line_end + 4
            if len(buf) < line_end + 2 + size + 2:
                return None
            body += buf[line_end + 2 : line_end + 2 + size]
            at = line_end + 2 + size + 2
    if meta["length"] is None:
        return None  # until the server closes
    end = body_start + meta["length"]
    if len(buf) < end:
        return None
    meta["body"] = bytes(buf[body_start:end])
    return end


class Connection:
    """One HTTP/1.1 connection, one request at a time, on a bare non-blocking socket driven by
    the event loop's sock_* calls: no transports or streams, as the load generator's own CPU
    per request is what matters (a new connection per request costs ~130 us of CPU this way,
    ~290 us with asyncio streams)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()

    async def request(self, raw: bytes) -> tuple[int, bytes, bool]:
        loop = asyncio.get_running_loop()
        sock = self.sock
        try:
            sent = sock.send(raw)
        except BlockingIOError:
            sent = 0
        if sent < len(raw):
            await loop.sock_sendall(sock, raw[sent:])
        buf = self.buf
        meta: dict = {}
        head_end = -1
        while True:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                data = await loop.sock_recv(sock, 65536)
            if not data:  # the server closed
                if head_end >= 0 and meta.get("length") is None and not meta.get("chunked"):
                    body = bytes(buf[head_end + 4 :])
                    buf.clear()
                    self.close()
                    return meta["status"], body, False
                self.close()
                raise ConnectionResetError("closed before the whole response")
            buf += data
            if head_end < 0:
                head_end = buf.find(b"\r\n\r\n")
                if head_end < 0:
                    continue
            end = _parse(buf, head_end, meta)
            if end is not None:
                del buf[:end]
                return meta["status"], meta["body"], meta["keep_alive"]


class RequestMaker:
    """Builds the raw bytes of request number n (for client i)."""

    def __init__(self, spec: dict[str, Any], host_header: str, authorization: str | None = None) -> None:
        self.spec = spec
        self.kind = spec["kind"]
        self.host = host_header
        # The production settings require an API key (ADR 0019): every request carries it.
        self.auth_header = f"Authorization: {authorization}\r\n" if authorization else ""
        self.rng = random.Random(spec.get("seed", 1))
        self.count = 0
        if self.kind in ("transfer", "batch"):
            self.prefix = spec["key_prefix"]
            self.currency = spec.get("currency", "USD")
            self.pattern = spec["pattern"]
            self.accounts = spec.get("accounts") or []
            self.sources = spec.get("sources") or []
            self.hot = spec.get("hot")
            self.size = int(spec.get("size", 1))
            self.atomic = "true" if spec.get("atomic") else "false"
        else:
            self.paths = spec["paths"]

    def make(self, client: int) -> bytes:
        n = self.count
        self.count += 1
        if self.kind == "get":
            path = self.paths[n % len(self.paths)]
            head = f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.auth_header}Accept: application/json\r\n\r\n"
            return head.encode()
        if self.kind == "batch":
            items = ",".join(self.transfer_body(client, f"{n}-{i}") for i in range(self.size))
            return self.post("/transfers/batch", f'{{"atomic":{self.atomic},"transfers":[{items}]}}'.encode())
        return self.post("/transfers", self.transfer_body(client, str(n)).encode())

    def transfer_body(self, client: int, key: str) -> str:
        if self.pattern == "pair":
            source, destination = self.accounts if self.rng.random() < 0.5 else self.accounts[::-1]
        elif self.pattern == "random":
            count = len(self.accounts)
            a = self.rng.randrange(count)
            b = self.rng.randrange(count - 1)
            if b >= a:
                b += 1
            source, destination = self.accounts[a], self.accounts[b]
        elif self.pattern == "hot":
            source, destination = self.sources[client % len(self.sources)], self.hot
        else:
            raise ValueError(self.pattern)
        return (
            f'{{"from":"{source}","to":"{destination}","amount":{self.rng.randint(1, 1000)},'
            f'"currency":"{self.currency}","idempotencyKey":"{self.prefix}-{key}"}}'
        )

    def post(self, path: str, body: bytes) -> bytes:
        return (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.auth_header}Content-Type: application/json\r\n"
            f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body


class Recorder:
    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.ok_latencies: list[float] = []
        self.error_latencies: list[float] = []
        self.first_send: float | None = None  # wall clock
        self.last_answer: float | None = None
        self.completions: Counter[int] = Counter()  # second since start -> answers
        self.started_wall = time.time()
        self.started_mono = time.perf_counter()

    def wall(self, mono: float) -> float:
        return self.started_wall + (mono - self.started_mono)

    def sent(self, mono: float) -> None:
        if self.first_send is None:
            self.first_send = self.wall(mono)

    def answered(self, outcome: str, ok: bool, latency: float, mono_end: float) -> None:
        self.outcomes[outcome] += 1
        (self.ok_latencies if ok else self.error_latencies).append(latency * 1000.0)
        self.last_answer = self.wall(mono_end)
        self.completions[int(mono_end - self.started_mono)] += 1


def classify(status: int, body: bytes) -> str:
    if status < 400:
        return str(status)
    try:
        code = json.loads(body).get("code", "?")
    except ValueError:  # not JSON: the status alone
        code = "?"
    return f"{status} {code}"


class Runner:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.host = spec.get("host", "127.0.0.1")
        self.port = int(spec["port"])
        self.timeout = float(spec.get("timeout", 30.0))
        self.ok_statuses = set(spec.get("ok_statuses", [200, 201]))
        self.maker = RequestMaker(spec["requests"], f"{self.host}:{self.port}", spec.get("authorization"))
        self.recorder = Recorder()
        self.idle: list[Connection] = []

    async def one(self, raw: bytes, conn: Connection | None, t_due: float) -> Connection | None:
        """Send `raw`; latency from `t_due` (the send time in a closed loop). Returns the
        connection if it may be reused."""
        rec = self.recorder
        rec.sent(time.perf_counter())
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("one() must run in a task: its timeout cancels the task")
        expired = []

        def expire() -> None:
            expired.append(True)
            task.cancel()

        timer = asyncio.get_running_loop().call_later(self.timeout, expire)
        try:
            answer = None
            if conn is not None and not conn.closed:
                try:
                    answer = await conn.request(raw)
                except (ConnectionResetError, BrokenPipeError):
                    # A kept-alive connection the server had closed meanwhile: send again on a new
                    # one, as HTTP clients do (the idempotency key makes it safe in any case).
                    conn.close()
            if answer is None:
                conn = await Connection.open(self.host, self.port)
                answer = await conn.request(raw)
            status, body, keep_alive = answer
        except (Exception, asyncio.CancelledError) as exc:  # every failure is an outcome to count
            if isinstance(exc, asyncio.CancelledError):
                if not expired:
                    raise
                task.uncancel()
            end = time.perf_counter()
            if conn is not None:
                conn.close()
            name = "timeout" if expired else type(exc).__name__
            rec.answered(f"conn {name}", False, end - t_due, end)
            return None
        finally:
            timer.cancel()
        end = time.perf_counter()
        ok = status in self.ok_statuses
        rec.answered(str(status) if ok else classify(status, body), ok, end - t_due, end)
        if keep_alive:
            return conn
        if conn is not None:  # always: the answer came over it
            conn.close()
        return None

    async def closed_loop(self) -> None:
        spec = self.spec
        deadline = time.perf_counter() + float(spec["duration"])
        think = float(spec.get("think_ms", 0.0)) / 1000.0
        max_requests = spec.get("max_requests")

        async def client(i: int) -> None:
            conn: Connection | None = None
            while time.perf_counter() < deadline:
                if max_requests is not None and self.maker.count >= max_requests:
                    break
                raw = self.maker.make(i)
                conn = await self.one(raw, conn, time.perf_counter())
                if think:
                    await asyncio.sleep(think)
            if conn is not None:
                conn.close()

        await asyncio.gather(*(client(i) for i in range(int(spec["concurrency"]))))

    async def open_loop(self) -> None:
        spec = self.spec
        rate = float(spec["rate"])
        total = int(rate * float(spec["duration"]))
        limit = asyncio.Semaphore(int(spec.get("max_connections", 512)))
        start = time.perf_counter() + 0.05
        tasks = set()

        async def fire(n: int, t_due: float) -> None:
            async with limit:
                now = time.perf_counter()
                if now - t_due > self.timeout:
                    # Waited for a free connection longer than a client would: it gives up
                    # without sending (nothing was committed).
                    self.recorder.answered("client timeout (never sent)", False, now - t_due, now)
                    return
                conn = self.idle.pop() if self.idle else None
                raw = self.maker.make(n)
                conn = await self.one(raw, conn, t_due)
                if conn is not None:
                    self.idle.append(conn)

        for n in range(total):
            t_due = start + n / rate
            delay = t_due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(fire(n, t_due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        for conn in self.idle:
            conn.close()

    def run(self) -> dict[str, Any]:
        mode = self.spec["mode"]
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        asyncio.run(self.closed_loop() if mode == "closed" else self.open_loop())
        elapsed = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        rec = self.recorder
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        return {
            "mode": mode,
            "requests": sum(rec.outcomes.values()),
            "ok": len(rec.ok_latencies),
            "outcomes": dict(rec.outcomes),
            "first_send": rec.first_send,
            "last_answer": rec.last_answer,
            "elapsed_s": elapsed,
            "ok_latencies_ms": rec.ok_latencies,
            "error_latencies_ms": rec.error_latencies,
            "answers_per_second": [rec.completions.get(s, 0) for s in range(int(elapsed) + 1)],
            "cpu_seconds": cpu,
            "cpu_share_of_one_core": cpu / elapsed if elapsed else 0.0,
        }


def main(argv: list[str]) -> int:
    spec_path, result_path = argv[1], argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    result = Runner(spec).run()
    with open(result_path, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
