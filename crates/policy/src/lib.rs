//! The model access decision: `decide(facts, policy, health, budgets) -> Decision`.
//!
//! For every request Perimeter asks one question: may this text go to this backend? The answer
//! comes from a declarative policy (levels, entity rules, tenants' residency, providers'
//! retention, training and certifications, model availability per region), the backends'
//! health and the tenant's budget. The decision is either a route (the preferred allowed
//! backend, whether to pseudonymise, and fallbacks drawn only from the same allowed set) or a
//! refusal with reasons. There is no third outcome: when nothing is allowed, the request is
//! denied. Every backend considered appears in the trace with why it was kept or rejected.
//!
//! The crate is pure (no IO, no clock): values in, a decision out. `decide` allocates only its
//! trace and fallback list; rendering reasons as text ([`Decision::explain`]) is separate, so the
//! decision itself costs a few microseconds.
//!
//! Invariants (property-tested in `tests/properties.rs`):
//! - raising the level or adding an entity never widens the allowed set;
//! - no route leaves the tenant's residency or uses a hosting the level forbids;
//! - an empty allowed set is always a deny.

mod decide;
mod explain;
mod lint;
mod model;

use perimeter_types::EntityKind;

pub use decide::{
    decide, BudgetState, Budgets, Decision, DenyReason, Facts, Health, LevelCause, Outcome, PassageFacts, Target,
    Unhealthy,
};
pub use explain::{Explanation, TraceEntry};
pub use lint::lint;
pub use model::{
    default_rule, kinds_named, AvailabilitySpec, BackendProfile, EntityAction, EntityRuleSpec, Hosting, LevelRuleSpec,
    LevelsSpec, Policy, PolicyError, PolicyInput, PolicySpec, Provider, Purpose, Retention, TenantSpec, DEFAULT_TENANT,
};

/// A set of entity kinds as a bit mask: cheap to copy, union and test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct KindSet(u32);

impl KindSet {
    pub const EMPTY: KindSet = KindSet(0);

    pub fn insert(&mut self, kind: EntityKind) {
        self.0 |= 1 << (kind as u32);
    }

    pub fn contains(self, kind: EntityKind) -> bool {
        self.0 & (1 << (kind as u32)) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: KindSet) -> KindSet {
        KindSet(self.0 | other.0)
    }

    pub fn intersection(self, other: KindSet) -> KindSet {
        KindSet(self.0 & other.0)
    }

    pub fn is_subset(self, other: KindSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = EntityKind> {
        EntityKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

impl FromIterator<EntityKind> for KindSet {
    fn from_iter<I: IntoIterator<Item = EntityKind>>(iter: I) -> Self {
        let mut s = KindSet::EMPTY;
        for k in iter {
            s.insert(k);
        }
        s
    }
}
