"""Built-in patterns (third-party ones come through entry points).

Each module here imports only :mod:`trayapp.api` and third-party libraries, exactly as a plugin
would. This package imports none of them by itself: :data:`trayapp.builtins.BUILTIN_PATTERNS`
names each built-in by a descriptor (id, title, ``module:Class``, and what start-up needs without
the class), and the registry imports a pattern's module when it is first needed (a charm of it
runs, is added or edited, its settings are shown). To add a built-in, append its descriptor
there; ``tests/core/test_builtin_registry.py`` checks that every descriptor matches its class.
"""
