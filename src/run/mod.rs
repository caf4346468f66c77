//! The durable interpreter: executes the checked IR step by step, persisting every result.
