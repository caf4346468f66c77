//! The standard library: `.orch` modules under `stdlib/`, embedded in the binary.

/// `(name, source)` of every stdlib module; `use std.NAME` finds `NAME` here.
pub const MODULES: &[(&str, &str)] = &[
    ("lifecycles", include_str!("../stdlib/lifecycles.orch")),
    ("http", include_str!("../stdlib/http.orch")),
    ("terraform", include_str!("../stdlib/terraform.orch")),
    ("helm", include_str!("../stdlib/helm.orch")),
    ("ansible", include_str!("../stdlib/ansible.orch")),
];

/// The source of `std.NAME`, if there is such a module.
pub fn module(name: &str) -> Option<&'static str> {
    MODULES.iter().find(|(n, _)| *n == name).map(|(_, src)| *src)
}
