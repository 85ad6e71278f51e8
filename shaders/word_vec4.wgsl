// word_vec4.wgsl: gather_rows.wgsl moves rows in units of vec4<u32> (rows of 16k bytes): a
// quarter of the loads and stores, which matters where each access has a fixed cost (the
// software Vulkan driver runs one access per lane).
alias Word = vec4<u32>;
