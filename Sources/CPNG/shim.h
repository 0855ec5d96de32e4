// libpng's "simplified API" (png_image_*): no setjmp/longjmp, so it is safe to call from Swift.
#include <png.h>
