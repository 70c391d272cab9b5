"""The technique floor: one module (or small package) per technique, speaking only the runtime's
hook vocabulary (:mod:`interp_core.core.names`), never a model class. Imports the runtime, never
the CLI."""
