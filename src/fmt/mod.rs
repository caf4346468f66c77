//! `orchc fmt`: one canonical layout for every construct.
