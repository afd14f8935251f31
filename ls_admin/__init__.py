"""Label Studio administration for pose6d: a checked SDK connection (``connection``), project
setup and task import (``project``), repair of the synced dataset (``reconcile``), the Label
Studio process (``server``) and exports (``export_*``). Every call to Label Studio goes through
label_studio_sdk."""
