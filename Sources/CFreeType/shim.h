// FreeType (Debian: libfreetype-dev) renders the text of plots: legends, axes, titles.
#include <ft2build.h>
#include FT_FREETYPE_H
