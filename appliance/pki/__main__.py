"""``python -m appliance.pki``: the same commands as ``appliance pki``."""

from appliance.pki.cli import pki

if __name__ == "__main__":
    pki(prog_name="python -m appliance.pki")
