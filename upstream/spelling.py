"""British to American spelling for the text that moves into lightly.

lightly-er writes British English (normalise, centring, behaviour); lightly writes
American. :func:`americanize` rewrites words of prose (it is applied to comments,
docstrings and string literals only, never to identifiers); :func:`british_words`
finds what is left, with a wider net than the map, for the tests.
"""

from __future__ import annotations

import re
from typing import Dict, List

# -ise verbs (and their -isation nouns) that American English writes with -ize.
_IZE_STEMS = (
    "normal",
    "initial",
    "optim",
    "minim",
    "maxim",
    "summar",
    "real",
    "organ",
    "recogn",
    "util",
    "stabil",
    "regular",
    "parameter",
    "parametr",
    "reparameter",
    "reparametr",
    "general",
    "special",
    "standard",
    "random",
    "serial",
    "vector",
    "priorit",
    "visual",
    "discret",
    "factor",
    "linear",
    "character",
    "emphas",
    "penal",
    "material",
    "synchron",
    "capital",
    "categor",
    "custom",
    "symmetr",
    "apolog",
    "neutral",
    "central",
    "local",
    "final",
    "memor",
    "quant",
    "sanit",
    "harmon",
    "amort",
    "trivial",
    "marginal",
)
_IZE_ENDINGS = {
    "ise": "ize",
    "ises": "izes",
    "ised": "ized",
    "ising": "izing",
    "iser": "izer",
    "isers": "izers",
    "isation": "ization",
    "isations": "izations",
    "isable": "izable",
}
_WORDS = {
    "analyse": "analyze",
    "analysed": "analyzed",
    "analyses": "analyzes",
    "analysing": "analyzing",
    "behaviour": "behavior",
    "behaviours": "behaviors",
    "centre": "center",
    "centres": "centers",
    "centred": "centered",
    "uncentred": "uncentered",
    "centring": "centering",
    "colour": "color",
    "colours": "colors",
    "favour": "favor",
    "favours": "favors",
    "favourable": "favorable",
    "neighbour": "neighbor",
    "neighbours": "neighbors",
    "neighbourhood": "neighborhood",
    "honour": "honor",
    "labour": "labor",
    "modelling": "modeling",
    "modelled": "modeled",
    "labelled": "labeled",
    "labelling": "labeling",
    "travelled": "traveled",
    "cancelled": "canceled",
    "signalled": "signaled",
    "signalling": "signaling",
    "totalled": "totaled",
    "catalogue": "catalog",
    "grey": "gray",
    "artefact": "artifact",
    "artefacts": "artifacts",
    "licence": "license",
    "defence": "defense",
    "programme": "program",
    "fulfil": "fulfill",
    "whilst": "while",
    "amongst": "among",
    "sceptical": "skeptical",
    "judgement": "judgment",
    "metre": "meter",
    "metres": "meters",
    "litre": "liter",
    "favourite": "favorite",
    "speciality": "specialty",
    "aluminium": "aluminum",
}


def _build() -> Dict[str, str]:
    words = dict(_WORDS)
    for stem in _IZE_STEMS:
        for british, american in _IZE_ENDINGS.items():
            words[stem + british] = stem + american
    return words


WORD_MAP: Dict[str, str] = _build()
_PATTERN = re.compile(
    r"\b(" + "|".join(sorted(map(re.escape, WORD_MAP), key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)


def _keep_case(british: str, american: str) -> str:
    if british.isupper():
        return american.upper()
    if british[0].isupper():
        return american[0].upper() + american[1:]
    return american


def americanize(text: str) -> str:
    """text with the British spellings of WORD_MAP replaced, keeping capitals.

    A word that is part of an identifier quoted in prose (``num_centres``,
    ``x.normalise(``) is left as it is.
    """

    def replace(match: re.Match[str]) -> str:
        if _in_identifier(match.string, *match.span()):
            return match.group(0)
        word = match.group(0)
        return _keep_case(word, WORD_MAP[word.lower()])

    return _PATTERN.sub(replace, text)


# A wider net than the map, for the tests: -ise/-isation forms, -our and -tre words.
_SUSPECT = re.compile(
    r"\b\w+(?:is(?:e|es|ed|ing|er|ers|ation|ations)|our|ours|tre|tres|tred|tring"
    r"|lled|lling)\b",
    re.IGNORECASE,
)
_ALLOWED = {
    word
    for line in """
# -ise words that are American too.
advise advised advises arise arises arising comprise comprises comprised concise
demise devise devised exercise exercises expertise franchise improvise likewise
noise noises otherwise pairwise precise premise premises promise promised raise
raised raises raising revise revised rise rises rising stepwise supervise supervised
surprise surprising surprisingly wise elementwise rowwise clockwise disguise
enterprise chemise poise cruise bruise merchandise despise televise incise excise
compromise paradise reprise anise treatise guise apprise mise praise praised denoise
denoised denoising crosswise columnwise blockwise pointwise channelwise layerwise
batchwise noisier noising raiser advisers adviser exerciser exercised premised
# -our words that are American too.
our ours four your yours hour hours pour tour tours flour detour contour contours
sour devour amour scour glamour paramour troubadour velour dour
# -tre, -lled words that are American too.
genre filled filling killed called calling rolled
rolling pulled pulling spelled spelling spilled installed installing controlled
controlling compelled enrolled enrolling polled polling scrolled scrolling skilled
stalled stalling dwelling telling selling yelled swelling propelled propelling
cancellation excelled patrolled smelled drilled drilling billed billing shelled
unrolled unrolling recalled distilled distilling thrilled tilled willed chilled
mulled dulled lulled culled walled hulled fulfilled fulfilling instilled overfilled
prefilled refilled autofilled unfilled uncontrolled expelled repelled quelled
dispelled rebelled rebelling impelled befell misspelled enthralled stilled spilling
trilled felled
# Names and words the net catches by their ending.
mises string strings docstring docstrings substring substrings bitstring hamstring
shoestring lookstring
""".splitlines()
    if not line.startswith("#")
    for word in line.split()
}


def british_words(text: str) -> List[str]:
    """The words of text that look British: the map's, and the wider net's."""
    found = [
        m.group(0)
        for m in _PATTERN.finditer(text)
        if not _in_identifier(text, m.start(), m.end())
    ]
    for match in _SUSPECT.finditer(text):
        word = match.group(0)
        if (
            "_" in word
            or word.lower() in _ALLOWED
            or _in_identifier(text, match.start(), match.end())
        ):
            continue
        found.append(word)
    return sorted(set(found))


def _in_identifier(text: str, start: int, end: int) -> bool:
    return (start > 0 and text[start - 1] in "_.") or (
        end < len(text) and text[end] in "_("
    )
