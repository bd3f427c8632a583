//! A priority set at run time by an operator or by the service the address serves
//! (`ha-agent priority set N`): it holds until `priority reset`, a restart, or a reload whose
//! configured priority differs from the one it replaced (the edited file then wins).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriorityOverride {
    /// The priority of the flags and file.
    configured: u32,
    set: Option<u32>,
}

impl PriorityOverride {
    pub fn new(configured: u32) -> Self {
        Self { configured, set: None }
    }

    /// The priority to run with.
    pub fn effective(&self) -> u32 {
        self.set.unwrap_or(self.configured)
    }

    pub fn configured(&self) -> u32 {
        self.configured
    }

    /// `priority set N` (Some) or `priority reset` (None).
    pub fn set(&mut self, priority: Option<u32>) {
        self.set = priority;
    }

    /// A reload read `configured`; the priority to run with after it, and whether a priority
    /// set at run time ended because the configured one changed.
    pub fn reload(&mut self, configured: u32) -> (u32, Option<u32>) {
        let ended = if configured != self.configured { self.set.take() } else { None };
        self.configured = configured;
        (self.effective(), ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_priority_holds_until_reset() {
        let mut p = PriorityOverride::new(100);
        assert_eq!(p.effective(), 100);
        p.set(Some(250));
        assert_eq!(p.effective(), 250);
        p.set(None);
        assert_eq!(p.effective(), 100);
    }

    #[test]
    fn a_reload_keeps_it_unless_the_configured_priority_changed() {
        let mut p = PriorityOverride::new(100);
        p.set(Some(250));
        assert_eq!(p.reload(100), (250, None), "the file did not touch the priority");
        assert_eq!(p.reload(120), (120, Some(250)), "the edited file wins");
        assert_eq!(p.reload(120), (120, None), "nothing left to end");
        assert_eq!(p.configured(), 120);
    }
}
