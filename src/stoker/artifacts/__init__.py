"""stoker.artifacts: typed artifacts, the versioned registry, lineage.

Importing this package plugs the ``${art:NAME[:VER],FIELD}`` resolver into stoker's config
system, pointed at the process-default registry (``stoker.init`` or ``$STOKER_HOME``).
"""
from stoker.artifacts.resolver import install as _install_art_resolver

_install_art_resolver()
