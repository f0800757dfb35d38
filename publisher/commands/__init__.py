"""One module per CLI command. Each defines ``register(subparsers)``, which adds its parser and
sets ``handler`` (a function of the parsed arguments returning the exit code). Command modules
import heavy dependencies inside their handler so ``cdr-publisher --help`` stays fast."""
