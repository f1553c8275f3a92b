"""Kubernetes exec probe: GET a health path over mutual TLS from inside the pod; exit 0 on 200."""

import http.client
import ssl
import sys

context = ssl.create_default_context(cafile="/etc/docclass/tls/ca.crt")
context.check_hostname = False  # loopback; the chain is still verified
context.load_cert_chain("/etc/docclass/probe-tls/tls.crt", "/etc/docclass/probe-tls/tls.key")
connection = http.client.HTTPSConnection("127.0.0.1", 8443, context=context, timeout=4)
connection.request("GET", sys.argv[1])
sys.exit(0 if connection.getresponse().status == 200 else 1)
