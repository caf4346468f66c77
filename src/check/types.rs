//! Type expressions to `Type`, and the checker's assignability (`fits`), which adds to
//! `Type::assignable_to` what needs the declarations: record values for blocks, and the state-aware
//! view of a product's fields.

use super::error::ModId;
use super::load::ItemTag;
use super::Checker;
use crate::diagnostics::Code;
use crate::ir::Type;
use crate::syntax::ast::{TypeExpr, TypeKind};
use indexmap::IndexMap;

impl Checker {
    /// Resolves a type expression written in module `m`. Unknown names are reported and give
    /// `Never`, which fits everywhere, so one bad type does not cascade.
    pub fn resolve_type(&mut self, m: ModId, t: &TypeExpr) -> Type {
        match &t.kind {
            TypeKind::List(inner) => Type::List(Box::new(self.resolve_type(m, inner))),
            TypeKind::Map(k, v) => {
                let key = self.resolve_type(m, k);
                if key != Type::Str && key != Type::Never {
                    self.err(super::CheckError::new(
                        Code::TypeMismatch,
                        Self::at(m, k.span),
                        format!("map keys are `Str`, not `{key}`"),
                        "map key type",
                    ));
                }
                Type::Map(Box::new(self.resolve_type(m, v)))
            }
            TypeKind::Optional(inner) => self.resolve_type(m, inner).optional(),
            TypeKind::Record(fields) => {
                let mut out = IndexMap::new();
                for f in fields {
                    let ty = self.resolve_type(m, &f.ty);
                    if out.insert(f.name.name.clone(), ty).is_some() {
                        self.err(super::CheckError::new(
                            Code::NameDuplicate,
                            Self::at(m, f.name.span),
                            format!("field `{}` is listed twice", f.name.name),
                            "listed again here",
                        ));
                    }
                }
                Type::Record(out)
            }
            TypeKind::Named { path, state } => {
                if path.segments.len() == 1 && state.is_none() {
                    let builtin = match path.segments[0].name.as_str() {
                        "Str" => Some(Type::Str),
                        "Int" => Some(Type::Int),
                        "Float" => Some(Type::Float),
                        "Bool" => Some(Type::Bool),
                        "Duration" => Some(Type::Duration),
                        "Json" => Some(Type::Json),
                        "Secret" => Some(Type::Secret),
                        _ => None,
                    };
                    if let Some(b) = builtin {
                        return b;
                    }
                }
                let Some(found) = self.lookup_or_report(m, path, "type") else { return Type::Never };
                if self.modules[found.module].ambiguous.contains(path.segments.last().map_or("", |s| s.name.as_str())) {
                    return Type::Never;
                }
                let ty = match found.tag {
                    ItemTag::Enum => Type::Enum(found.qname.clone()),
                    ItemTag::Block => Type::Block(found.qname.clone()),
                    ItemTag::Product => Type::Product { name: found.qname.clone(), state: None },
                    ItemTag::Type => self.alias(&found),
                    other => {
                        self.err(super::CheckError::new(
                            Code::TypeMismatch,
                            Self::at(m, path.span),
                            format!("`{}` is {}, not a type", path.dotted(), other.describe()),
                            "expected a type",
                        ));
                        return Type::Never;
                    }
                };
                match (state, ty) {
                    (None, ty) => ty,
                    (Some(s), Type::Product { name, .. }) => {
                        if !self.product_has_state(&name, &s.name) {
                            let states = self.product_states(&name).join(", ");
                            self.err(
                                super::CheckError::new(
                                    Code::LifecycleUnknownState,
                                    Self::at(m, s.span),
                                    format!("`{}` is not a state of the lifecycle of `{name}`", s.name),
                                    "unknown state",
                                )
                                .help(format!("the states are: {states}")),
                            );
                            // Reported; uses of this type are not compared by state.
                            return Type::Product { name, state: None };
                        }
                        Type::Product { name, state: Some(s.name.clone()) }
                    }
                    (Some(s), other) => {
                        self.err(super::CheckError::new(
                            Code::TypeMismatch,
                            Self::at(m, s.span),
                            format!("only products have states; `{other}` is not a product"),
                            "not a product",
                        ));
                        other
                    }
                }
            }
        }
    }

    /// The type a `type NAME = ...` alias stands for (resolved once, recursion reported).
    fn alias(&mut self, found: &super::Found) -> Type {
        if let Some(t) = self.aliases.get(&found.qname) {
            return t.clone();
        }
        if !self.resolving.insert(found.qname.clone()) {
            let span = match &self.modules[found.module].ast().items[found.index].kind {
                crate::syntax::ast::ItemKind::Type(d) => d.name.span,
                _ => Default::default(),
            };
            self.err(super::CheckError::new(
                Code::TypeMismatch,
                Self::at(found.module, span),
                format!("type `{}` is defined in terms of itself", found.qname),
                "recursive type",
            ));
            return Type::Never;
        }
        let texpr = match &self.modules[found.module].ast().items[found.index].kind {
            crate::syntax::ast::ItemKind::Type(d) => d.ty.clone(),
            _ => return Type::Never,
        };
        let t = self.resolve_type(found.module, &texpr);
        self.resolving.remove(&found.qname);
        self.aliases.insert(found.qname.clone(), t.clone());
        t
    }

    pub fn product_states(&self, product: &str) -> Vec<String> {
        self.products
            .get(product)
            .and_then(|p| self.lifecycles.get(&p.lifecycle))
            .map(|l| l.states.clone())
            .unwrap_or_default()
    }

    pub fn product_has_state(&self, product: &str, state: &str) -> bool {
        match self.products.get(product).and_then(|p| self.lifecycles.get(&p.lifecycle)) {
            Some(l) => l.states.iter().any(|s| s == state),
            // An unresolved product or lifecycle was reported already.
            None => true,
        }
    }

    /// A field's type in a given state: a `when` field is required only in its states.
    pub fn field_in_state(ty: &Type, when: &[String], state: Option<&str>) -> Type {
        if when.is_empty() || state.is_some_and(|s| when.iter().any(|w| w == s)) {
            ty.clone()
        } else {
            ty.clone().optional()
        }
    }

    /// The fields of block `name` as a record, in a state (or in any state, `None`).
    pub fn block_view(&self, name: &str, state: Option<&str>) -> Type {
        match self.blocks.get(name) {
            Some(b) => Type::Record(
                b.fields.iter().map(|(k, f)| (k.clone(), Self::field_in_state(&f.ty, &f.when, state))).collect(),
            ),
            None => Type::Never,
        }
    }

    /// Whether a value of type `a` may be used where `b` is expected.
    pub fn fits(&self, a: &Type, b: &Type) -> bool {
        // `Never` stands for a type that failed to resolve (already reported): anything goes there.
        if a.assignable_to(b) || *b == Type::Never {
            return true;
        }
        match (a, b) {
            (Type::Optional(x), Type::Optional(y)) => self.fits(x, y),
            (x, Type::Optional(y)) => self.fits(x, y),
            (Type::List(x), Type::List(y)) => self.fits(x, y),
            (Type::Map(x), Type::Map(y)) => self.fits(x, y),
            (Type::Record(fs), Type::Map(v)) => fs.values().all(|f| self.fits(f, v)),
            (Type::Record(xs), Type::Record(ys)) => {
                xs.keys().all(|k| ys.contains_key(k))
                    && ys.iter().all(|(k, yt)| match xs.get(k) {
                        Some(xt) => self.fits(xt, yt),
                        None => yt.is_optional(),
                    })
            }
            // A record value for a block: every field known, every always-required field given.
            (Type::Record(_), Type::Block(name)) => self.fits(a, &self.block_view(name, None)),
            // A product whose lifecycle did not resolve (already reported) has no states to compare.
            (Type::Product { name: x, .. }, Type::Product { name: y, .. }) if x == y => {
                self.products.get(x).is_some_and(|p| p.lifecycle.is_empty())
            }
            _ => false,
        }
    }

    /// `a` and `b` together, for the two arms of an `if` or the elements of a list: the wider of
    /// the two when one fits the other.
    pub fn join(&self, a: &Type, b: &Type) -> Option<Type> {
        if *a == Type::Never {
            return Some(b.clone());
        }
        if *b == Type::Never {
            return Some(a.clone());
        }
        if self.fits(a, b) {
            return Some(b.clone());
        }
        if self.fits(b, a) {
            return Some(a.clone());
        }
        match (a, b) {
            (Type::Product { name: x, .. }, Type::Product { name: y, .. }) if x == y => {
                Some(Type::Product { name: x.clone(), state: None })
            }
            (Type::Optional(x), y) | (y, Type::Optional(x)) => self.join(x, y).map(Type::optional),
            // A list of arguments may mix plain strings and secrets; the whole list is then secret
            // (it may go only where a secret may, e.g. `exec` args).
            (Type::Str, Type::Secret) | (Type::Secret, Type::Str) => Some(Type::Secret),
            _ => None,
        }
    }
}
