"""stoker.artifacts: typed artifacts, the versioned registry, provenance and lineage.

Loading this package points ``${art:NAME[:VER],FIELD}`` in configs at the process-default
registry (``stoker.init`` or ``$STOKER_HOME/registry``): code that uses artifacts can use
them in configs, as the Nemotron kit's users expect. That is a downward call into the
config layer through :func:`stoker.artifacts.resolver.install`, the one installer; the
config layer itself never imports this package.
"""
from stoker.artifacts.resolver import install as _install_art_resolver

_install_art_resolver()
