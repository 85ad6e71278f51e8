// word_u64x2_split.wgsl: word_vec4_split.wgsl in vec2<u64> units (see word_u64x2.wgsl). Unit j
// of a row is the last 4 - old_shift u32 words of one 16-byte unit of the buffer and the first
// old_shift words of the next; a thread carries the second into its next unit, so it still
// loads one unit per unit it writes.
alias Word = vec2<u64>;

fn copy_span(out_at: u32, old_at: u32, first: u32, end: u32) {
    let src = params.old_offset + old_at;
    var prev = old[src + first];
    switch params.old_shift {
        case 1u: {
            for (var j = first; j < end; j++) {
                let next = old[src + j + 1u];
                out[out_at + j] = vec2<u64>(
                    (prev.x >> 32u) | (prev.y << 32u),
                    (prev.y >> 32u) | (next.x << 32u),
                );
                prev = next;
            }
        }
        case 2u: {
            for (var j = first; j < end; j++) {
                let next = old[src + j + 1u];
                out[out_at + j] = vec2<u64>(prev.y, next.x);
                prev = next;
            }
        }
        default: {
            for (var j = first; j < end; j++) {
                let next = old[src + j + 1u];
                out[out_at + j] = vec2<u64>(
                    (prev.y >> 32u) | (next.x << 32u),
                    (next.x >> 32u) | (next.y << 32u),
                );
                prev = next;
            }
        }
    }
}
