// The declaration is all this module provides; libFuzzer itself is linked by scripts/fuzz.sh.
#include "CLibFuzzer.h"
