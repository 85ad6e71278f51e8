// word_vec4.wgsl: gather_rows.wgsl moves rows in units of vec4<u32> (rows of 16k bytes): a
// quarter of the loads and stores, which matters where each access has a fixed cost (the
// software Vulkan driver runs one access per lane).
alias Word = vec4<u32>;

// Units first..end of a row: from unit `old_at` of the window (after its lead of
// `old_offset` units) to unit `out_at` of the chunk.
fn copy_span(out_at: u32, old_at: u32, first: u32, end: u32) {
    let src = params.old_offset + old_at;
    for (var j = first; j < end; j++) {
        out[out_at + j] = old[src + j];
    }
}
