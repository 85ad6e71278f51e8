// copy_span.wgsl: gather_rows.wgsl's `copy_span` for windows whose rows lie on their unit
// boundaries, with word_u32.wgsl or word_vec4.wgsl (word_vec4_split.wgsl has its own).

// Units first..end of a row: from unit `old_at` of the window (after its lead of
// `old_offset` units) to unit `out_at` of the chunk.
fn copy_span(out_at: u32, old_at: u32, first: u32, end: u32) {
    let src = params.old_offset + old_at;
    for (var j = first; j < end; j++) {
        out[out_at + j] = old[src + j];
    }
}
