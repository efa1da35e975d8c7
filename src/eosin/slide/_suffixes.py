"""File name endings of slides and images, for commands and the viewer that look inside folders."""

__all__ = ["SLIDE_SUFFIXES"]

#: file name endings of slides and images; files with other endings inside a folder are skipped (with a note)
SLIDE_SUFFIXES = frozenset(
    [
        ".svs",
        ".tif",
        ".tiff",
        ".ndpi",
        ".vms",
        ".vmu",
        ".mrxs",
        ".scn",
        ".svslide",
        ".bif",
        ".qptiff",
        ".dcm",
        ".png",
        ".jpg",
        ".jpeg",
        ".bmp",
        ".isyntax",
        ".czi",
        ".vsi",  # refused by open_slide with how to convert it: better an error than a silent skip
    ]
)
