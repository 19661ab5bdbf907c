//! Content security as values (issue 20): what a checker says of a text, and WeChat's label
//! numbers with the names the protocol uses. Facts: WeChat's `msgSecCheck` v2 page (the answer
//! is `result.suggest` and `result.label`; errcode 0 only means the call worked); docs/wechat.md.

/// What a check recommends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suggest {
    Pass,
    /// Doubtful: the operator decides (`ModerationReview`).
    Review,
    Risky,
}

impl Suggest {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pass" => Some(Suggest::Pass),
            "review" => Some(Suggest::Review),
            "risky" => Some(Suggest::Risky),
            _ => None,
        }
    }
}

/// A check's answer: the recommendation, WeChat's label number, and its trace id (kept for
/// the operator; it names the request at WeChat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub suggest: Suggest,
    pub label: u32,
    pub trace_id: Option<String>,
}

/// WeChat's labels and the names clients see (`content_blocked`'s `label`). One table: the
/// protocol's list is this one.
pub const LABELS: &[(u32, &str)] = &[
    (100, "normal"),
    (10001, "ad"),
    (20001, "politics"),
    (20002, "porn"),
    (20003, "abuse"),
    (20006, "illegal"),
    (20008, "fraud"),
    (20012, "vulgar"),
    (20013, "copyright"),
    (21000, "other"),
];

/// The name of a label number; one WeChat may add later is `other`.
pub fn label_name(label: u32) -> &'static str {
    LABELS
        .iter()
        .find(|(n, _)| *n == label)
        .map_or("other", |(_, name)| name)
}

/// `msgSecCheck` scenes: 1 profile (display names), 2 comment (the default for messages),
/// 3 forum, 4 social log.
pub const SCENE_PROFILE: u8 = 1;
pub const SCENE_COMMENT: u8 = 2;

/// The longest text `msgSecCheck` takes, in characters.
pub const MAX_CHECKED_CHARS: usize = 2500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_have_names_and_unknown_ones_are_other() {
        assert_eq!(label_name(20002), "porn");
        assert_eq!(label_name(100), "normal");
        assert_eq!(label_name(99999), "other");
        let mut numbers: Vec<u32> = LABELS.iter().map(|(n, _)| *n).collect();
        numbers.dedup();
        assert_eq!(numbers.len(), LABELS.len(), "each label once");
    }

    #[test]
    fn suggestions_parse_as_wechat_writes_them() {
        assert_eq!(Suggest::parse("risky"), Some(Suggest::Risky));
        assert_eq!(Suggest::parse("review"), Some(Suggest::Review));
        assert_eq!(Suggest::parse("pass"), Some(Suggest::Pass));
        assert_eq!(Suggest::parse("RISKY"), None);
    }
}
