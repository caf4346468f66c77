//! `orchc repl`: an interactive session over the same checker and interpreter.
