#include <isa-l/igzip_lib.h>

// The level buffer each igzip level asks for: the sizes are macros Swift cannot import.
static inline uint32_t edgelog_igzip_level_buffer(uint32_t level) {
    switch (level) {
    case 0: return ISAL_DEF_LVL0_DEFAULT;
    case 1: return ISAL_DEF_LVL1_DEFAULT;
    case 2: return ISAL_DEF_LVL2_DEFAULT;
    case 3: return ISAL_DEF_LVL3_DEFAULT;
    default: return 0;
    }
}
