//! Chapter 9: the KV cache of a sliding-window layer. Its queries never look further back
//! than the window, so the cache keeps only the rows a later query can still see:
//! memory bounded by the capacity, however long the sequence.

use crate::mechanisms::kv_cache::LayerKvCache;
use crate::support::error::{AttnError, Result};

impl LayerKvCache {
    /// The same cache for a layer with a sliding window of `window` keys and
    /// `sink_tokens` StreamingLLM sink tokens ([`crate::ScoreOptions`]): when an append
    /// does not fit, it first drops every row that no later query can see, keeping the
    /// sink tokens and the last `window - 1` rows. The capacity must hold those and one
    /// new token: at least `sink_tokens + window` rows.
    pub fn with_window(mut self, window: usize, sink_tokens: usize) -> Result<Self> {
        let needed = window.checked_add(sink_tokens);
        if window == 0 || needed.is_none_or(|n| n > self.capacity) {
            return Err(AttnError::Config(format!(
                "a sliding-window cache needs window >= 1 and capacity >= sink_tokens + \
                 window, got window {window}, sink_tokens {sink_tokens}, capacity {}",
                self.capacity
            )));
        }
        self.window = Some((window, sink_tokens));
        Ok(self)
    }

    /// The `(window, sink_tokens)` this cache slides with, if it does.
    pub fn window(&self) -> Option<(usize, usize)> {
        self.window
    }

    /// Rows dropped so far from the middle of the sequence (after the sink tokens): row
    /// `r >= sink_tokens` holds position `first_pos() + dropped() + r`.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    // ANCHOR: drop_unseen_rows
    /// Makes room for `n_new` rows, if the cache slides, by dropping the rows that no
    /// later query sees: the next query sees the sink tokens and the last `window - 1`
    /// rows before it; everything between goes. The kept tail moves down to close the
    /// gap (one copy of `window - 1` rows per `capacity - window - sink_tokens + 1`
    /// tokens), so the rows stay in position order and every kernel reads them as one
    /// contiguous block. Still no room: [`AttnError::CacheFull`], nothing changed.
    pub(crate) fn drop_unseen_rows(&mut self, n_new: usize) -> Result<()> {
        let (capacity, len, stride) = (self.capacity, self.len, self.stride);
        let full = AttnError::CacheFull { capacity, len, adding: n_new };
        let Some((window, sinks)) = self.window else { return Err(full) };
        let keep_tail = window - 1; // the next query's window, without itself
        let sinks = sinks.min(len);
        let drop = len.saturating_sub(sinks + keep_tail); // rows sinks .. sinks + drop go
        if n_new > capacity - (len - drop) {
            return Err(full);
        }
        for m in self.keys.iter_mut().chain(self.values.iter_mut()) {
            // column-major: each column is one feature of every row, contiguous
            for column in m.chunks_exact_mut(stride) {
                column.copy_within(sinks + drop..len, sinks);
            }
        }
        self.dropped += drop;
        self.len -= drop;
        Ok(())
    }
    // ANCHOR_END: drop_unseen_rows
}
