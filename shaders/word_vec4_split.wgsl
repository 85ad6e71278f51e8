// word_vec4_split.wgsl: gather_rows.wgsl moves rows in units of vec4<u32> from a window whose
// lead (the bytes its buffer holds before its first row, see src/engine/gpu/host_memory.rs) is
// 16 * old_offset + 4 * old_shift bytes, old_shift in 1..=3: the rows are not on 16-byte
// boundaries of the buffer. Unit j of a row is then the last 4 - old_shift words of one vec4
// of the buffer and the first old_shift words of the next; a thread carries the second into
// its next unit, so it still loads one vec4 per unit it writes.
alias Word = vec4<u32>;

fn copy_span(out_at: u32, old_at: u32, first: u32, end: u32) {
    let src = params.old_offset + old_at;
    var prev = old[src + first];
    switch params.old_shift {
        case 1u: {
            for (var j = first; j < end; j++) {
                let next = old[src + j + 1u];
                out[out_at + j] = vec4<u32>(prev.yzw, next.x);
                prev = next;
            }
        }
        case 2u: {
            for (var j = first; j < end; j++) {
                let next = old[src + j + 1u];
                out[out_at + j] = vec4<u32>(prev.zw, next.xy);
                prev = next;
            }
        }
        default: {
            for (var j = first; j < end; j++) {
                let next = old[src + j + 1u];
                out[out_at + j] = vec4<u32>(prev.w, next.xyz);
                prev = next;
            }
        }
    }
}
