#include <isa-l/igzip_lib.h>

// The level buffer each igzip level is given: the sizes are macros Swift cannot import. The small
// buffer (16 Ki tokens, 84 KiB at level 1) gave the same bytes as the default (64 Ki tokens, 276
// KiB) on the bench's 18 KiB blocks in the same time; a block with more tokens than it holds is
// written as more deflate blocks, still one stream.
static inline uint32_t edgelog_igzip_level_buffer(uint32_t level) {
    switch (level) {
    case 0: return ISAL_DEF_LVL0_SMALL;
    case 1: return ISAL_DEF_LVL1_SMALL;
    case 2: return ISAL_DEF_LVL2_SMALL;
    case 3: return ISAL_DEF_LVL3_SMALL;
    default: return 0;
    }
}
