"""A witness (C2SP tlog-witness): it remembers the newest checkpoint it cosigned for each log and
cosigns a new one only when a consistency proof shows the new tree extends it.

Run at another site, by other people, with its own key, it is what a database superuser who
also stole the log's signing key cannot get past: a rolled-back or forked log has no proof of
consistency with what the witness already saw, so it gets no cosignature, and auditors who
require one (``audit-tool verify --witness``) see the fork.

``Witness.add_checkpoint`` implements the protocol's ``add-checkpoint`` (statuses as the spec
says); ``Witness.latest`` serves the newest cosigned checkpoint for monitoring. ``serve`` puts
both behind HTTPS with client certificates.
"""

from __future__ import annotations

import base64
import binascii
import http.server
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import checkpoint as notes
from audit.cosignature import body_of, cosign
from audit.errors import AuditError, CheckpointError, ProofError, RootMismatchError
from audit.files import write_atomically
from audit.signer import Verifier
from audit.types import Checkpoint
from audit.verify import verify_consistency

MAX_BODY_BYTES = 64 * 1024
MAX_PROOF_LINES = 63
SIZE_TYPE = "text/x.tlog.size"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


@dataclass
class Memory:
    """What a witness remembers per origin: the newest cosigned checkpoint note, and the keys
    logs rotated to (announced by checkpoints it cosigned)."""

    latest: dict[str, str]
    keys: dict[str, list[str]]


class WitnessState:
    """The witness's ``Memory`` in one JSON file (atomic writes)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Memory:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return Memory({}, {})
        try:
            return Memory(dict(data["latest"]), {k: list(v) for k, v in data["keys"].items()})
        except (KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{self.path}: not a witness state file") from exc

    def save(self, memory: Memory) -> None:
        data = {"latest": memory.latest, "keys": memory.keys}
        write_atomically(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")


class Witness:
    """Thread-safe: one lock makes check-and-persist atomic, as the protocol requires."""

    def __init__(
        self,
        name: str,
        key: Ed25519PrivateKey,
        logs: list[Verifier],
        state: WitnessState,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._key = key
        self._logs: dict[str, list[Verifier]] = {}
        for verifier in logs:
            self._logs.setdefault(verifier.origin, []).append(verifier)
        self._state = state
        self._memory = state.load()
        for origin, vkeys in self._memory.keys.items():
            for vkey in vkeys:
                self._trust_key(origin, vkey)
        self._lock = threading.Lock()
        self._clock = clock

    def add_checkpoint(self, request: str) -> Answer:
        try:
            old, proof, note = _parse(request)
        except (ValueError, binascii.Error) as exc:
            return Answer(400, f"malformed add-checkpoint request: {exc}\n")
        origin = note.split("\n", 1)[0]
        if origin not in self._logs:
            return Answer(404, f"unknown log {origin!r}\n")
        checkpoint = self._open(note)
        if checkpoint is None:
            return Answer(403, "no signature by a trusted key of this log\n")
        if old > checkpoint.size:
            return Answer(400, f"old size {old} is larger than the checkpoint size\n")
        with self._lock:
            known = self._memory.latest.get(origin)
            known_cp = notes.parse_body(body_of(known)) if known else None
            known_size = known_cp.size if known_cp else 0
            if old != known_size:
                return Answer(409, f"{known_size}\n", SIZE_TYPE)
            refusal = _inconsistent(old, proof, known_cp, checkpoint)
            if refusal is not None:
                log.error("witness: refused a checkpoint", extra={"origin": origin, "why": refusal})
                return refusal
            self._memory.latest[origin] = note
            if checkpoint.next_key is not None:  # the log rotated its key: follow it
                self._trust_key(origin, checkpoint.next_key)
                self._memory.keys.setdefault(origin, []).append(checkpoint.next_key)
            self._state.save(self._memory)
        return Answer(200, cosign(body_of(note), self.name, self._key, int(self._clock())))

    def latest(self, origin: str) -> Answer:
        """The newest checkpoint cosigned for ``origin``, with this witness's cosignature."""
        with self._lock:
            note = self._memory.latest.get(origin)
        if note is None:
            return Answer(404, f"no checkpoint of {origin!r} has been cosigned\n")
        line = cosign(body_of(note), self.name, self._key, int(self._clock()))
        return Answer(200, note + line)

    def _trust_key(self, origin: str, vkey: str) -> None:
        """After a rotation only the new key signs this log's checkpoints."""
        name, public = notes.parse_vkey(vkey)
        self._logs[origin] = [Verifier(name, public, origin)]

    def _open(self, note: str) -> Checkpoint | None:
        origin = note.split("\n", 1)[0]
        for verifier in self._logs[origin]:
            try:
                return verifier.open(note)
            except AuditError:
                continue
        return None


def _inconsistent(
    old: int, proof: list[bytes], known: Checkpoint | None, new: Checkpoint
) -> Answer | None:
    if known is None:
        return None if not proof else Answer(422, "the proof must be empty from size 0\n")
    if old == new.size:
        if proof or known.root != new.root:
            return Answer(409, f"{known.size}\n", SIZE_TYPE)
        return None
    try:
        verify_consistency(old, new.size, proof, known.root, new.root)
    except (ProofError, RootMismatchError) as exc:
        return Answer(422, f"the consistency proof does not verify: {exc}\n")
    return None


def _parse(request: str) -> tuple[int, list[bytes], str]:
    """(old size, proof hashes, checkpoint note) of an add-checkpoint body."""
    head, sep, note = request.partition("\n\n")
    if not sep or not note:
        raise ValueError("want the old size and proof lines, an empty line, then a checkpoint")
    lines = head.split("\n")
    first = lines[0]
    if not first.startswith("old ") or not first[4:].isdigit() or first[4:] != str(int(first[4:])):
        raise ValueError("the first line must be 'old <size>'")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise ValueError(f"at most {MAX_PROOF_LINES} proof lines")
    proof = [base64.b64decode(line, validate=True) for line in lines[1:]]
    return int(first[4:]), proof, note


def serve(
    witness: Witness, bind: tuple[str, int], context: ssl.SSLContext
) -> http.server.ThreadingHTTPServer:
    """An HTTPS server (client certificates required by ``context``); call ``serve_forever``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "docclass-witness"

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/add-checkpoint":
                self._answer(Answer(404, "not found\n"))
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._answer(Answer(413, "request too large\n"))
                return
            self._answer(witness.add_checkpoint(self.rfile.read(length).decode("utf-8", "replace")))

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            origins = parse_qs(url.query).get("origin", [])
            if url.path != "/latest" or len(origins) != 1:
                self._answer(Answer(404, "not found\n"))
                return
            self._answer(witness.latest(origins[0]))

        def _answer(self, answer: Answer) -> None:
            payload = answer.body.encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            log.info("witness: " + format, *args)

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
            """A failed handshake (no or a foreign client certificate) is one log line."""
            log.warning("witness: connection from %s failed", client_address[0], exc_info=False)

    server = Server(bind, Handler)
    # The handshake happens in the handler's thread, so a slow client cannot stall accept().
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    return server
