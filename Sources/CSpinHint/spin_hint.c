// The hint is an inline function in the header; a C target needs a source file.
#include "CSpinHint.h"
