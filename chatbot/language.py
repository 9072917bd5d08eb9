"""Language of a patient message (en, hinglish, hi) and Devanagari in Latin letters.

Hindi is matched the way Hinglish is written: `to_latin` spells Devanagari the way Hinglish speakers type it
(schwa dropped: 'दर्द' -> 'dard', 'खून' -> 'khun'), so one vocabulary, one lexical index and one embedding space
serve both scripts. The Hinglish marker words that tell Hinglish from English live in prompts/language.yaml.
"""

from __future__ import annotations

import re
from functools import lru_cache

from chatbot.wording import load

LANGUAGES = ("en", "hinglish", "hi")
_LATIN_WORD = re.compile(r"[a-z]+")
_DEVANAGARI = re.compile(r"[\u0900-\u097f]")
_LETTER = re.compile(r"[^\W\d_]")

# Devanagari -> rough Hinglish spelling, so the Hinglish rules also read Hindi script ('मर जाऊं' -> 'mar jaun').
_DEVA_CONSONANTS = dict(
    zip(
        "कखगघङचछजझञटठडढणतथदधनपफबभमयरलवशषसह",
        "k kh g gh n ch chh j jh n t th d dh n t th d dh n p ph b bh m y r l v sh sh s h".split(),
        strict=True,
    )
)
_DEVA_NUKTA = {"ज": "z", "फ": "f", "ड": "r", "ढ": "rh", "क": "q", "ख": "kh", "ग": "g"}
_DEVA_VOWELS = dict(zip("अआइईउऊऋएऐओऔऑ", "a a i i u u ri e ai o au o".split(), strict=True))
_DEVA_SIGNS = dict(zip("ािीुूृेैोौॉॅ", "a i i u u ri e ai o au o e".split(), strict=True))
_DEVA_OTHER = {"ं": "n", "ँ": "n", "ः": "h", "।": ".", "॥": "."}
_DEVA_WORD = re.compile(r"[\u0900-\u097f]+")


def _deva_word(word: str) -> str:
    """One Devanagari word in Latin letters, dropping the silent inherent 'a' (schwa) the way Hinglish does."""
    syllables: list[list[str]] = []  # [consonant, vowel]; vowel "" = virama, None = inherent 'a'
    for ch in word:
        if ch in _DEVA_CONSONANTS:
            syllables.append([_DEVA_CONSONANTS[ch], None])
        elif ch == "\u093c" and syllables and syllables[-1][1] is None:  # nukta
            base = next((k for k, v in _DEVA_CONSONANTS.items() if v == syllables[-1][0]), "")
            syllables[-1][0] = _DEVA_NUKTA.get(base, syllables[-1][0])
        elif ch == "\u094d" and syllables:  # virama
            syllables[-1][1] = ""
        elif ch in _DEVA_SIGNS and syllables:
            syllables[-1][1] = _DEVA_SIGNS[ch]
        elif ch in _DEVA_VOWELS:
            syllables.append(["", _DEVA_VOWELS[ch]])
        elif ch in _DEVA_OTHER and syllables:
            syllables[-1][1] = (syllables[-1][1] if syllables[-1][1] is not None else "a") + _DEVA_OTHER[ch]
        else:
            syllables.append(["", _DEVA_OTHER.get(ch, "")])
    out = []
    for i, (consonant, vowel) in enumerate(syllables):
        if vowel is None:
            last = i == len(syllables) - 1
            nxt = syllables[i + 1] if not last else None
            medial = i > 0 and out and out[-1][-1:] in "aeiou" and nxt is not None and nxt[0] and bool(nxt[1])
            vowel = "" if (last and i > 0) or medial else "a"
        out.append(consonant + vowel)
    return "".join(out)


def to_latin(text: str) -> str:
    """Devanagari words to Hinglish spelling; everything else is kept."""
    return _DEVA_WORD.sub(lambda m: _deva_word(m.group()), text) if _DEVA_WORD.search(text) else text


@lru_cache(maxsize=1)
def _markers() -> frozenset[str]:
    return frozenset(str(w).lower() for w in load("language.yaml")["hinglish_markers"])


@lru_cache(maxsize=1)
def generic_words() -> frozenset[str]:
    """Words that name no topic ('normal', 'please', 'actually'): never reported as 'not covered by the pages'."""
    return frozenset(str(w).lower() for w in load("language.yaml")["generic_words"]) | _markers()


def detect(text: str) -> str:
    """'hi' when most letters are Devanagari, 'hinglish' when Hindi marker words make up enough of a Latin
    message, else 'en'. 'SMP के बाद बाल कब धो सकते हैं?' -> 'hi'; 'smp ke baad baal kab dho sakte hai' -> 'hinglish'."""
    letters = _LETTER.findall(text or "")
    if not letters:
        return "en"
    if sum(bool(_DEVANAGARI.match(ch)) for ch in letters) / len(letters) >= 0.3:
        return "hi"
    words = _LATIN_WORD.findall(text.lower())
    markers = _markers()
    hits = sum(w in markers for w in words)
    return "hinglish" if words and (hits >= 2 and hits / len(words) >= 0.15 or hits >= 4) else "en"


def has_devanagari(text: str) -> bool:
    return bool(_DEVANAGARI.search(text or ""))
