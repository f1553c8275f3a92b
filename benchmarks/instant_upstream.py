"""An instant OpenAI-compatible upstream for overhead benchmarks: a minimal asyncio HTTP/1.1
server, run in its own process, answering every chat completion at once with a fixed, valid
constrained answer. It measures the appliance, not a model.

Run: ``python -m benchmarks.instant_upstream PORT [CERT KEY CA]``; with the three files it
serves TLS and requires a client certificate from CA, as the vllm role serves vLLM.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys

from harness.fake_vllm import chat_body

CHAT = json.dumps(chat_body({"A": 0.05, "B": 0.1, "C": 0.05, "D": 0.7, "E": 0.1}, "D")).encode()
OK = b"{}"


def _response(body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


RESPONSES = {
    b"/v1/chat/completions": _response(CHAT),
    # The warm-up checks each answer code is one token; benchmark documents stay under the
    # token budget in bytes, so no other text is ever tokenized.
    b"/tokenize": _response(b'{"count": 1, "max_model_len": 4096, "tokens": [1]}'),
}
DEFAULT = _response(OK)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            writer.write(RESPONSES.get(path, DEFAULT))
    except (asyncio.IncompleteReadError, ConnectionResetError):
        pass
    finally:
        writer.close()


def server_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


async def main(port: int, context: ssl.SSLContext | None) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024, ssl=context)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    tls = server_context(*sys.argv[2:5]) if len(sys.argv) == 5 else None
    asyncio.run(main(int(sys.argv[1]), tls))
