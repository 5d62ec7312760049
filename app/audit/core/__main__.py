"""`python -m app.audit.core ...`: the offline verifier's command line."""

import sys

from .offline import main

sys.exit(main())
