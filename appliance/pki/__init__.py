"""Development PKI: a throwaway CA, server and client certificates, revocation and CRLs.

Dev-only. It exists for the quick start and the tests; production brings the hospital's CA and
CRL (see docs/security-model.md). Keys are written unencrypted with mode 0600.
"""

from appliance.pki.authority import DevCA, Issued
from appliance.pki.errors import PkiError

__all__ = ["DevCA", "Issued", "PkiError"]
