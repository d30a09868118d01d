//! Ideas in order: an example of chapter N (`code/examples/chN_*.rs`, `exN_*.rs`) uses no
//! crate item that a later chapter introduces, so a reader never meets an idea before it
//! is taught. The same rule for the crate listings a chapter includes, with the known
//! exceptions listed below: the crate's production types carry later chapters' features
//! (GQA's `rope` field, RoPE's layout), and a listing shows the item whole.

use std::fs;

use book_tests::workspace_root;

/// The crate items (and the names of ideas) each chapter introduces; an item of chapter N
/// may appear in chapter N and later.
const INTRODUCED: &[(u32, &[&str])] = &[
    (2, &["causal_mask", "apply_causal_mask", "Batch", "query_offset"]),
    (3, &["MultiHeadAttention", "MultiHeadAttentionWrapper", "QkvoWeights"]),
    (
        4,
        &[
            "HeadLayout",
            "grouped_attention",
            "GroupedQueryAttention",
            "AttentionConfig",
            "Preset",
            "kv_cache_bytes",
            "kv_cache_bytes_per_layer",
            "gqa_kv_saving",
            "n_kv_heads",
            "group_size",
        ],
    ),
    (5, &["Rope", "rope_inv_freq", "start_pos"]),
    (6, &["LayerKvCache", "new_cache"]),
    (
        7,
        &[
            "Llama3Scaling",
            "RopeLayout",
            "permute_meta_to_hf",
            "permute_hf_to_meta",
            "HfLlamaConfig",
            "open_layer_tensors",
            "TensorFile",
            "forward_prefill_decode",
        ],
    ),
    (
        8,
        &[
            "FlashAttention",
            "DecodeAttention",
            "AttentionInputs",
            "KernelChoice",
            "FastKernel",
            "fast_exp",
        ],
    ),
    (
        9,
        &[
            "ScoreOptions",
            "attention_weights_with",
            "grouped_attention_with",
            "with_window",
            "drop_unseen_rows",
            "sink_tokens",
        ],
    ),
    (10, &["QkNorm", "RmsNormStyle", "rms_norm_rows", "HfFixture"]),
    (
        11,
        &[
            "YarnScaling",
            "RopeScaling",
            "yarn_get_mscale",
            "with_scaling",
            "correction_range",
        ],
    ),
    (
        12,
        &[
            "MultiHeadLatentAttention",
            "LatentCache",
            "MlaShape",
            "MlaWeights",
            "MlaPath",
            "MlaQuery",
            "mla_layer",
        ],
    ),
    (13, &["QuantizedKvCache", "KvFormat", "f32_to_e4m3", "e4m3_to_f32"]),
    (14, &["PagedKvCache", "SeqId", "Workload", "PoolUsage", "DEFAULT_BLOCK_SIZE"]),
    (
        15,
        &[
            "PaddedBatch",
            "PackedBatch",
            "PaddingSide",
            "RaggedKvCache",
            "padding_causal_mask",
            "masked_grouped_attention",
            "apply_rope_at",
            "forward_padded",
            "forward_packed",
        ],
    ),
    (
        16,
        &[
            "PartialAttention",
            "SplitKDecode",
            "TensorParallel",
            "RingAttention",
            "all_reduce_sum",
            "ring_schedule",
        ],
    ),
];

/// Listings (chapter file, anchor, word) that show a later idea, each for a reason the
/// chapter states where it shows the listing. Shrink this list; never grow it without a
/// sentence in the chapter.
const KNOWN_LISTING_EXCEPTIONS: &[(&str, &str, &str)] = &[
    // the production layer: RoPE tables (ch. 5) and the kernel choice (ch. 8) are fields
    ("ch04-00-grouped-query-attention.md", "gqa", "Rope"),
    ("ch04-00-grouped-query-attention.md", "gqa", "KernelChoice"),
    ("ch04-00-grouped-query-attention.md", "gqa_project", "start_pos"),
    // the shapes of real models include their RoPE scaling (ch. 7)
    ("ch04-00-grouped-query-attention.md", "attention_config", "Llama3Scaling"),
    // `Rope` holds its pair layout and scaling, which chapter 7 explains
    ("ch05-00-rope.md", "rope_struct", "RopeLayout"),
    ("ch05-00-rope.md", "rope_new", "Llama3Scaling"),
    ("ch05-00-rope.md", "rope_new", "RopeLayout"),
    // the production layer and cache carry the later models' options (ch. 9, 10); the
    // chapters say the fields are empty for Llama
    ("ch04-00-grouped-query-attention.md", "gqa", "ScoreOptions"),
    ("ch04-00-grouped-query-attention.md", "gqa", "QkNorm"),
    ("ch06-00-kv-cache.md", "kv_cache_append", "drop_unseen_rows"),
    ("ch08-00-making-attention-fast.md", "flash_query_block", "sink_tokens"),
];

/// The last numbered chapter.
const LAST_CHAPTER: u32 = 16;

/// The identifiers in `text`.
fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// The items of `text` first introduced after chapter `ch`.
fn later_items(ch: u32, text: &str) -> Vec<(u32, &'static str)> {
    let used = words(text);
    INTRODUCED
        .iter()
        .filter(|(intro, _)| *intro > ch)
        .flat_map(|(intro, items)| items.iter().map(move |item| (*intro, *item)))
        .filter(|(_, item)| used.contains(item))
        .collect()
}

#[test]
fn examples_use_no_idea_of_a_later_chapter() {
    let dir = workspace_root().join("code/examples");
    let mut problems = Vec::new();
    let mut checked = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // ch07_..., ex10_...: the two digits after the prefix
        let chapter = name
            .strip_prefix("ch")
            .or_else(|| name.strip_prefix("ex"))
            .and_then(|rest| rest.get(..2))
            .and_then(|n| n.parse::<u32>().ok());
        let Some(ch) = chapter else { continue };
        checked += 1;
        let text = fs::read_to_string(&path).unwrap();
        // the whole file: the lines outside the anchor are on the page too, folded away
        for (intro, item) in later_items(ch, &text) {
            problems.push(format!(
                "code/examples/{name} (chapter {ch}) uses `{item}` of chapter {intro}"
            ));
        }
    }
    assert!(checked > 40, "found only {checked} chapter examples");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn listings_use_no_idea_of_a_later_chapter_but_the_known_ones() {
    let src = workspace_root().join("src");
    let mut problems = Vec::new();
    let mut seen_exceptions = Vec::new();
    for ch in 1..=LAST_CHAPTER {
        let Some(path) =
            fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()).find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("ch{ch:02}-"))
            })
        else {
            continue;
        };
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let chapter = fs::read_to_string(&path).unwrap();
        for line in chapter.lines() {
            let Some(target) =
                line.strip_prefix("{{#include ../").and_then(|l| l.strip_suffix("}}"))
            else {
                continue;
            };
            let Some((code, anchor)) = target.split_once(':') else { continue };
            if !code.starts_with("code/src/") {
                continue;
            }
            let text = fs::read_to_string(workspace_root().join(code)).unwrap();
            let start = text.find(&format!("ANCHOR: {anchor}\n")).expect("anchor exists");
            let end =
                text.find(&format!("ANCHOR_END: {anchor}\n")).expect("anchor closes");
            for (intro, item) in later_items(ch, &text[start..end]) {
                let key = (file.as_str(), anchor, item);
                if let Some(i) =
                    KNOWN_LISTING_EXCEPTIONS.iter().position(|known| *known == key)
                {
                    seen_exceptions.push(i);
                } else {
                    problems.push(format!(
                        "{file}: listing `{anchor}` uses `{item}` of chapter {intro}"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // an exception that no longer happens is removed from the list, so the list only
    // shrinks
    for (i, known) in KNOWN_LISTING_EXCEPTIONS.iter().enumerate() {
        assert!(
            seen_exceptions.contains(&i),
            "{known:?} no longer happens: remove it from the list"
        );
    }
}

#[test]
fn later_items_finds_whole_words_only() {
    assert_eq!(later_items(3, "let rope = Rope::new(..)"), [(5, "Rope")]);
    assert!(later_items(3, "let ropes_of_sand = 1; // Roped").is_empty());
    assert!(later_items(5, "Rope::new").is_empty());
}
