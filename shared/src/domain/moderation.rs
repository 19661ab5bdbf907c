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

/// The label number of a name of [`LABELS`] (an unknown name is 21000, `other`).
pub fn label_number(name: &str) -> u32 {
    LABELS
        .iter()
        .find(|(_, n)| *n == name)
        .map_or(21000, |(number, _)| *number)
}

/// What the operator's webhook answered, as a decision: `{"action":"allow"}`,
/// `{"action":"deny","label":<name or number>}` (no label: `other`) or
/// `{"action":"replace","text":<1 to max_text_bytes bytes>}`. Anything else is `None`.
pub fn webhook_decision(answer: &serde_json::Value, max_text_bytes: usize) -> Option<Decision> {
    match answer.get("action")?.as_str()? {
        "allow" => Some(Decision::Allow),
        "deny" => {
            let label = match answer.get("label") {
                None | Some(serde_json::Value::Null) => 21000,
                Some(serde_json::Value::String(name)) => label_number(name),
                Some(n) => u32::try_from(n.as_u64()?).ok()?,
            };
            Some(Decision::Deny { label })
        }
        "replace" => {
            let text = answer.get("text")?.as_str()?;
            (!text.trim().is_empty() && text.len() <= max_text_bytes).then(|| Decision::Replace {
                text: text.to_owned(),
            })
        }
        _ => None,
    }
}

/// What a stored text was submitted as, for comparing an idempotent retry with it: the
/// SHA-256 (hex) of the text the client sent (a replacement is stored, the submission is not).
pub fn fingerprint(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// `msgSecCheck` scenes: 1 profile (display names), 2 comment (the default for messages),
/// 3 forum, 4 social log.
pub const SCENE_PROFILE: u8 = 1;
pub const SCENE_COMMENT: u8 = 2;

/// The longest text `msgSecCheck` takes, in characters.
pub const MAX_CHECKED_CHARS: usize = 2500;

/// What a moderator decided about one text (a provider's answer, before the operator's
/// policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Doubtful (WeChat's `review`): the label for the operator.
    Review {
        label: u32,
    },
    /// Refused (WeChat's `risky`, the webhook's `deny`).
    Deny {
        label: u32,
    },
    /// Allowed as this text instead (the webhook's `replace`).
    Replace {
        text: String,
    },
}

impl Decision {
    /// The decision a WeChat verdict stands for.
    pub fn of(verdict: &Verdict) -> Self {
        match verdict.suggest {
            Suggest::Pass => Decision::Allow,
            Suggest::Review => Decision::Review {
                label: verdict.label,
            },
            Suggest::Risky => Decision::Deny {
                label: verdict.label,
            },
        }
    }

    /// The stricter of two decisions on parts of one text (a deny wins, then a review).
    pub fn worst(self, other: Decision) -> Decision {
        let rank = |d: &Decision| match d {
            Decision::Deny { .. } => 3,
            Decision::Review { .. } => 2,
            Decision::Replace { .. } => 1,
            Decision::Allow => 0,
        };
        if rank(&other) > rank(&self) {
            other
        } else {
            self
        }
    }
}

/// Why a text got no decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undecided {
    /// The sender has no openid (a token minted by the operator, not through `/login`).
    NoOpenid,
    /// The checker did not answer (busy, timeout, quota, an error).
    Unavailable,
}

/// What to do with a `review` decision (`ModerationReview`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnReview {
    /// Store it; the label is recorded on the item for the operator.
    #[default]
    Allow,
    /// Refuse it as a deny.
    Block,
}

/// What to do when the checker cannot answer (`ModerationUnavailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnavailable {
    /// Store it marked unchecked; a schedule checks it again later.
    #[default]
    Allow,
    /// Refuse it with `moderation_unavailable`.
    Block,
}

/// What to do with a sender who has no openid (`ModerationWithoutOpenid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WithoutOpenid {
    /// Store it marked unchecked (the re-check needs an openid too, so the webhook or a later
    /// login is what clears it).
    #[default]
    Skip,
    /// Refuse it with `login_required`.
    Refuse,
}

/// What to do with a video sent without a poster under media checks
/// (`ModerationVideoWithoutPoster`): WeChat checks images (the poster stands for the video),
/// so such a video cannot be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PosterlessVideo {
    /// Store it marked unchecked (never checked).
    #[default]
    Allow,
    /// Refuse it with `poster_required`.
    Refuse,
}

/// The operator's choices for what no checker decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    pub review: OnReview,
    pub unavailable: OnUnavailable,
    pub without_openid: WithoutOpenid,
    pub posterless_video: PosterlessVideo,
}

/// How a stored message stands with moderation (kept on its item).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Screening {
    /// Passed, or not moderated (`Moderation=none`, media, messages from before).
    #[default]
    Clear,
    /// Stored on a `review` decision: the label, for the operator only (never in frames).
    Review { label: u32 },
    /// Stored without a decision: a text is checked again by the re-check schedule; media
    /// (a poster-less video, a sender without an openid) stay so.
    Unchecked,
    /// Media whose check was asked of WeChat (or is to be): shown at once, taken down if the
    /// verdict that comes later is `risky`; asked once more when none came in
    /// [`MEDIA_CHECK_DUE_SECS`].
    Pending,
    /// Taken down after it was stored: shown as `"blocked":true` with no content.
    Blocked { label: u32 },
    /// Stored as the webhook's replacement; `submitted` is the [`fingerprint`] of the text the
    /// client sent, which a retry with the same `client_msg_id` is compared with.
    Replaced { submitted: String },
}

/// A text send after moderation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Store it: as submitted, or as `replacement`; marked `screening`.
    Store {
        replacement: Option<String>,
        screening: Screening,
    },
    /// Refuse it; nothing is stored.
    Refuse(Refused),
}

/// Why a text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `content_blocked` with this label.
    Blocked { label: u32 },
    /// `login_required`: the sender has no openid and the operator refuses those.
    LoginRequired,
    /// `moderation_unavailable`: no decision and the operator refuses what is unchecked.
    Unavailable,
    /// `poster_required`: a video without a poster, which media checks cannot see.
    PosterRequired,
}

/// A media check with no verdict this long after it was asked is overdue: logged, counted and
/// asked once more (WeChat answers within 30 minutes).
pub const MEDIA_CHECK_DUE_SECS: i64 = 3600;

/// How long the download URL WeChat is given for a media check stays valid (it must be at
/// least the 30 minutes WeChat may take).
pub const MEDIA_CHECK_URL_SECS: u64 = 3600;

/// How many times one media check is asked at most (the first, and once more when overdue).
pub const MEDIA_CHECK_ASKS: u32 = 2;

/// How a media send is stored when media are checked (`Moderation=wechat`): pending (its
/// check is asked after the send), unchecked (it cannot be checked and the operator allows
/// that), or refused before anything is written.
pub fn media_screening(
    video: bool,
    has_poster: bool,
    has_openid: bool,
    policy: &Policy,
) -> Result<Screening, Refused> {
    if video && !has_poster {
        return match policy.posterless_video {
            PosterlessVideo::Allow => Ok(Screening::Unchecked),
            PosterlessVideo::Refuse => Err(Refused::PosterRequired),
        };
    }
    match (has_openid, policy.without_openid) {
        (true, _) => Ok(Screening::Pending),
        (false, WithoutOpenid::Skip) => Ok(Screening::Unchecked),
        (false, WithoutOpenid::Refuse) => Err(Refused::LoginRequired),
    }
}

/// The object a media message's check looks at: an image itself, a video's poster (`None`
/// for text, an off-site URL, or a video without a poster).
pub fn checked_key(m: &crate::domain::message::Message) -> Option<&str> {
    let media = m.media.as_ref()?;
    match m.chat_type {
        crate::domain::message::ChatType::Image => Some(m.content.as_str()),
        crate::domain::message::ChatType::Video => media.poster.as_deref(),
        _ => None,
    }
}

/// What the operator's `policy` makes of a checker's `answer`.
pub fn judge(answer: Result<Decision, Undecided>, policy: &Policy) -> Judgement {
    let store = |screening| Judgement::Store {
        replacement: None,
        screening,
    };
    match answer {
        Ok(Decision::Allow) => store(Screening::Clear),
        Ok(Decision::Replace { text }) => Judgement::Store {
            replacement: Some(text),
            screening: Screening::Clear,
        },
        Ok(Decision::Deny { label }) => Judgement::Refuse(Refused::Blocked { label }),
        Ok(Decision::Review { label }) => match policy.review {
            OnReview::Allow => store(Screening::Review { label }),
            OnReview::Block => Judgement::Refuse(Refused::Blocked { label }),
        },
        Err(Undecided::NoOpenid) => match policy.without_openid {
            WithoutOpenid::Skip => store(Screening::Unchecked),
            WithoutOpenid::Refuse => Judgement::Refuse(Refused::LoginRequired),
        },
        Err(Undecided::Unavailable) => match policy.unavailable {
            OnUnavailable::Allow => store(Screening::Unchecked),
            OnUnavailable::Block => Judgement::Refuse(Refused::Unavailable),
        },
    }
}

/// Shards of the sparse index of unchecked messages: its partitions, so that a burst of
/// unchecked sends (WeChat down for a while) spreads its index writes.
pub const UNCHECKED_SHARDS: u8 = 10;

/// The shard message `id` (a ULID, whose last characters are random) is indexed under.
pub fn unchecked_shard(id: &str) -> u8 {
    id.bytes().last().unwrap_or(0) % UNCHECKED_SHARDS
}

/// `text` in pieces of at most [`MAX_CHECKED_CHARS`] characters, each checked on its own.
pub fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let cut = rest
            .char_indices()
            .nth(MAX_CHECKED_CHARS)
            .map_or(rest.len(), |(i, _)| i);
        let (piece, tail) = rest.split_at(cut);
        out.push(piece);
        rest = tail;
    }
    out
}

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

    #[test]
    fn media_are_pending_unless_they_cannot_be_checked() {
        let lenient = Policy::default();
        let strict = Policy {
            without_openid: WithoutOpenid::Refuse,
            posterless_video: PosterlessVideo::Refuse,
            ..Policy::default()
        };
        // an image, a video with a poster: checked after the send
        for p in [&lenient, &strict] {
            assert_eq!(
                media_screening(false, false, true, p),
                Ok(Screening::Pending)
            );
            assert_eq!(media_screening(true, true, true, p), Ok(Screening::Pending));
        }
        // a video without a poster: unchecked, or refused
        assert_eq!(
            media_screening(true, false, true, &lenient),
            Ok(Screening::Unchecked)
        );
        assert_eq!(
            media_screening(true, false, true, &strict),
            Err(Refused::PosterRequired)
        );
        // a sender without an openid: as for texts
        assert_eq!(
            media_screening(false, false, false, &lenient),
            Ok(Screening::Unchecked)
        );
        assert_eq!(
            media_screening(false, false, false, &strict),
            Err(Refused::LoginRequired)
        );
    }

    #[test]
    fn the_policy_decides_what_no_checker_does() {
        let strict = Policy {
            review: OnReview::Block,
            unavailable: OnUnavailable::Block,
            without_openid: WithoutOpenid::Refuse,
            posterless_video: Default::default(),
        };
        let lenient = Policy::default();
        let stored = |screening| Judgement::Store {
            replacement: None,
            screening,
        };
        // a deny is refused under any policy; an allow stored clear
        for p in [&strict, &lenient] {
            assert_eq!(
                judge(Ok(Decision::Deny { label: 20002 }), p),
                Judgement::Refuse(Refused::Blocked { label: 20002 })
            );
            assert_eq!(judge(Ok(Decision::Allow), p), stored(Screening::Clear));
        }
        let review = Ok(Decision::Review { label: 21000 });
        assert_eq!(
            judge(review.clone(), &lenient),
            stored(Screening::Review { label: 21000 })
        );
        assert_eq!(
            judge(review, &strict),
            Judgement::Refuse(Refused::Blocked { label: 21000 })
        );
        assert_eq!(
            judge(Err(Undecided::Unavailable), &lenient),
            stored(Screening::Unchecked)
        );
        assert_eq!(
            judge(Err(Undecided::Unavailable), &strict),
            Judgement::Refuse(Refused::Unavailable)
        );
        assert_eq!(
            judge(Err(Undecided::NoOpenid), &lenient),
            stored(Screening::Unchecked)
        );
        assert_eq!(
            judge(Err(Undecided::NoOpenid), &strict),
            Judgement::Refuse(Refused::LoginRequired)
        );
        assert_eq!(
            judge(Ok(Decision::Replace { text: "***".into() }), &strict),
            Judgement::Store {
                replacement: Some("***".into()),
                screening: Screening::Clear
            }
        );
    }

    #[test]
    fn long_texts_are_checked_in_pieces_and_the_worst_piece_decides() {
        let text = "字".repeat(MAX_CHECKED_CHARS * 2 + 1);
        let parts = pieces(&text);
        assert_eq!(
            parts.iter().map(|p| p.chars().count()).collect::<Vec<_>>(),
            [MAX_CHECKED_CHARS, MAX_CHECKED_CHARS, 1]
        );
        assert_eq!(parts.concat(), text);
        assert_eq!(pieces("short"), ["short"]);
        assert!(pieces("").is_empty());
        let worst = Decision::Allow
            .worst(Decision::Review { label: 1 })
            .worst(Decision::Deny { label: 2 })
            .worst(Decision::Review { label: 3 });
        assert_eq!(worst, Decision::Deny { label: 2 });
    }

    #[test]
    fn webhook_answers_become_decisions_and_anything_else_none() {
        let d = |v: serde_json::Value| webhook_decision(&v, 10);
        use serde_json::json;
        assert_eq!(d(json!({"action":"allow"})), Some(Decision::Allow));
        assert_eq!(
            d(json!({"action":"deny","label":"fraud"})),
            Some(Decision::Deny { label: 20008 })
        );
        assert_eq!(
            d(json!({"action":"deny","label":20001})),
            Some(Decision::Deny { label: 20001 })
        );
        assert_eq!(
            d(json!({"action":"deny"})),
            Some(Decision::Deny { label: 21000 })
        );
        assert_eq!(
            d(json!({"action":"deny","label":"made-up"})),
            Some(Decision::Deny { label: 21000 })
        );
        assert_eq!(
            d(json!({"action":"replace","text":"***"})),
            Some(Decision::Replace { text: "***".into() })
        );
        for bad in [
            json!({"action":"replace","text":""}),
            json!({"action":"replace","text":"longer than ten bytes"}),
            json!({"action":"replace"}),
            json!({"action":"ALLOW"}),
            json!({"action":"deny","label":-1}),
            json!("allow"),
            json!({}),
        ] {
            assert_eq!(d(bad.clone()), None, "{bad}");
        }
        assert_eq!(fingerprint("a"), fingerprint("a"));
        assert_ne!(fingerprint("a"), fingerprint("b"));
    }
}
