//! The types of the language (brief §5) and the assignability relation.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Type {
    Str,
    Int,
    Float,
    Bool,
    Duration,
    Json,
    Secret,
    /// The type of `fail(...)`: fits wherever a value is expected.
    Never,
    List(Box<Type>),
    /// `[Str: T]`
    Map(Box<Type>),
    /// `{ a: T, b: U? }`; the empty record is the unit value (`{}`).
    Record(IndexMap<String, Type>),
    Optional(Box<Type>),
    Enum(String),
    Block(String),
    /// `P` (state `None`: any state) or `P@state`.
    Product {
        name: String,
        state: Option<String>,
    },
}

impl Type {
    pub fn unit() -> Type {
        Type::Record(IndexMap::new())
    }

    pub fn optional(self) -> Type {
        match self {
            Type::Optional(_) | Type::Json | Type::Never => self,
            t => Type::Optional(Box::new(t)),
        }
    }

    /// The type without one level of `?`.
    pub fn unwrap_optional(&self) -> &Type {
        match self {
            Type::Optional(t) => t,
            t => t,
        }
    }

    pub fn is_optional(&self) -> bool {
        matches!(self, Type::Optional(_))
    }

    /// Whether a value of type `self` may be used where `target` is expected.
    /// `T` to `T?`, `P@s` to `P`, `Int` to `Float`, a record whose fields are all `T` to `[Str: T]`,
    /// every value but a `Secret` to `Json`, `Never` to anything.
    pub fn assignable_to(&self, target: &Type) -> bool {
        if self == target {
            return true;
        }
        match (self, target) {
            (Type::Never, _) => true,
            (Type::Secret, Type::Json) => false,
            (s, Type::Json) => !s.contains_secret(),
            (Type::Optional(a), Type::Optional(b)) => a.assignable_to(b),
            (a, Type::Optional(b)) => a.assignable_to(b),
            (Type::Int, Type::Float) => true,
            (Type::List(a), Type::List(b)) => a.assignable_to(b),
            (Type::Map(a), Type::Map(b)) => a.assignable_to(b),
            (Type::Record(fields), Type::Map(v)) => fields.values().all(|f| f.assignable_to(v)),
            (Type::Record(a), Type::Record(b)) => {
                // Every field of the target must be given (unless optional), and no extra ones.
                a.keys().all(|k| b.contains_key(k))
                    && b.iter().all(|(k, bt)| match a.get(k) {
                        Some(at) => at.assignable_to(bt),
                        None => bt.is_optional(),
                    })
            }
            (Type::Product { name: a, state: sa }, Type::Product { name: b, state: sb }) => {
                a == b && (sb.is_none() || sa == sb)
            }
            _ => false,
        }
    }

    pub fn contains_secret(&self) -> bool {
        match self {
            Type::Secret => true,
            Type::List(t) | Type::Map(t) | Type::Optional(t) => t.contains_secret(),
            Type::Record(fields) => fields.values().any(Type::contains_secret),
            _ => false,
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Str => write!(f, "Str"),
            Type::Int => write!(f, "Int"),
            Type::Float => write!(f, "Float"),
            Type::Bool => write!(f, "Bool"),
            Type::Duration => write!(f, "Duration"),
            Type::Json => write!(f, "Json"),
            Type::Secret => write!(f, "Secret"),
            Type::Never => write!(f, "Never"),
            Type::List(t) => write!(f, "[{t}]"),
            Type::Map(t) => write!(f, "[Str: {t}]"),
            Type::Record(fields) => {
                if fields.is_empty() {
                    return write!(f, "{{}}");
                }
                write!(f, "{{ ")?;
                for (i, (k, t)) in fields.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k}: {t}")?;
                }
                write!(f, " }}")
            }
            Type::Optional(t) => write!(f, "{t}?"),
            Type::Enum(n) | Type::Block(n) => write!(f, "{n}"),
            Type::Product { name, state: None } => write!(f, "{name}"),
            Type::Product { name, state: Some(s) } => write!(f, "{name}@{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(state: Option<&str>) -> Type {
        Type::Product { name: "Node".into(), state: state.map(String::from) }
    }

    #[test]
    fn assignability_follows_the_brief() {
        assert!(Type::Int.assignable_to(&Type::Float));
        assert!(!Type::Float.assignable_to(&Type::Int));
        assert!(Type::Str.assignable_to(&Type::Str.optional()));
        assert!(!Type::Str.optional().assignable_to(&Type::Str));
        assert!(product(Some("active")).assignable_to(&product(None)));
        assert!(!product(None).assignable_to(&product(Some("active"))));
        assert!(!product(Some("initial")).assignable_to(&product(Some("active"))));
        assert!(Type::List(Box::new(Type::Int)).assignable_to(&Type::Json));
        assert!(!Type::Secret.assignable_to(&Type::Json));
        assert!(Type::Never.assignable_to(&Type::Int));
        let rec = Type::Record([("a".to_string(), Type::Str)].into_iter().collect());
        assert!(rec.assignable_to(&Type::Map(Box::new(Type::Str))));
        assert!(!rec.assignable_to(&Type::Map(Box::new(Type::Int))));
    }

    #[test]
    fn display_matches_source_syntax() {
        assert_eq!(Type::Map(Box::new(Type::List(Box::new(Type::Int)))).to_string(), "[Str: [Int]]");
        assert_eq!(product(Some("active")).optional().to_string(), "Node@active?");
    }
}
