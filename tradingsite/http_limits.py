"""Request headers over daphne's limits answer 431 instead of a dropped connection.

daphne serves HTTP with twisted's HTTPChannel, which caps a request's headers at
`totalHeadersSize` (16 KB: request line plus every header line) and `maxHeaders` (500
lines), and each single line at LineReceiver's MAX_LENGTH (16 KB). Past the cap of one
line it closes the connection without a word; past the others it answers a bare 400. A
browser with too many cookies for the host then shows a broken page with no reason. Here
all three answer 431 Request Header Fields Too Large with a sentence, and close.

`install()` (from tradingsite.asgi, which daphne imports before it starts listening) makes
daphne's HTTP factory build these channels.
"""

from __future__ import annotations

from twisted.web import http

BODY_TEMPLATE = (
    "The request's headers are too large: at most {size} bytes in all, {lines} header lines and "
    "{line} bytes per line are accepted. Send fewer or smaller headers (often: clear this "
    "site's cookies).\n"
)


class HeaderLimitChannel(http.HTTPChannel):
    """twisted's HTTPChannel, answering 431 where it would drop the connection or say 400
    because of the headers' size or number."""

    def lineReceived(self, line: bytes) -> None:
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._too_large()
            return
        super().lineReceived(line)

    def headerReceived(self, line: bytes) -> bool:
        if self._receivedHeaderCount + 1 > self.maxHeaders:
            self._too_large()
            return False
        return super().headerReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._too_large()

    def _too_large(self) -> None:
        body = BODY_TEMPLATE.format(
            size=self.totalHeadersSize, lines=self.maxHeaders, line=self.MAX_LENGTH
        ).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (len(body), body)
        )
        # Read and drop the rest of what the client sends (closing with unread data would
        # reset the connection and could destroy the answer before the client reads it);
        # close once the answer is out, or after a few seconds at most.
        self.dataReceived = self.lineReceived = lambda *args: None
        self.transport.loseWriteConnection()
        self.setTimeout(5)


def _build(factory: http.HTTPFactory) -> http._GenericHTTPChannelProtocol:
    return http._GenericHTTPChannelProtocol(HeaderLimitChannel())


def install() -> None:
    from daphne.http_protocol import HTTPFactory

    HTTPFactory.protocol = _build
