"""Suite-wide settings: every test's network traffic stays on 127.0.0.1."""

import os

os.environ.setdefault("NO_PROXY", "*")
