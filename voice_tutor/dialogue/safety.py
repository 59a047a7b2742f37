"""Keeping the conversation safe for children, in both directions.

The learner's words are checked before any tutor (or a remote LLM) sees them,
and every sentence the tutor produces is checked before it can reach speech
synthesis.  The check is local, offline and pure: regular expressions written
for a school, where "kill the process", "the cell dies", "the atomic bomb" or
"a drug that lowers fever" are lessons, not alarms.  So the patterns look for
who is doing what to whom ("I'm going to hurt him", "I want to die"), not for
single scary words.  Every pattern uses bounded repetition, so a hostile
100 KB utterance is scanned in linear time.

Public API:

* ``check(text, source=...) -> SafetyVerdict``: the local verdict.
* ``redact(text) -> str``: personal data replaced by ``[email]``, ``[phone]``...
* ``moderate_remote(text, client, ...)``: OpenAI's moderation endpoint when one
  is configured, merged with the local verdict; never blocks the learner.
* ``SafeTutor(inner, on_alert)``: any ``Tutor``, filtered both ways.

A verdict with ``alert`` means a teacher must be told; the session turns
``on_alert`` into an alert event.
"""

from __future__ import annotations

import asyncio
import bisect
import inspect
import logging
import re
import string
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from voice_tutor.dialogue.base import DialogueContext, Tutor
from voice_tutor.speech.sentences import SentenceChunker

log = logging.getLogger(__name__)

Severity = Literal["none", "low", "high"]
Source = Literal["learner", "tutor"]


class Category(StrEnum):
    """What a verdict is about; the values are plain strings for events and logs."""

    NONE = "none"
    SELF_HARM = "self_harm"
    VIOLENCE = "violence"
    """Threats against people, weapons at school, making weapons."""
    SEXUAL = "sexual"
    """Explicit content, and disclosures of abuse or grooming."""
    HATE = "hate"
    """Slurs, hate against groups, and harassment ("kill yourself")."""
    DRUGS = "drugs"
    BULLYING = "bullying"
    """Being bullied or hurt, isolation, or wanting to bully someone."""
    PERSONAL_DATA = "personal_data"


@dataclass(frozen=True, slots=True)
class SafetyVerdict:
    """What the filter found in one text, and what to say instead.

    ``matched`` is the offending phrase; for personal data it is the kinds
    found (``"[email] [phone]"``), never the data itself, so verdicts can be
    logged and shown to a teacher.  ``redacted_text`` is the text with personal
    data replaced, whatever the category.  ``learner_reply`` is what the tutor
    should say instead (None when the text is safe).  ``source`` tells whether
    the learner or the tutor said it.
    """

    category: Category
    severity: Severity
    matched: str
    redacted_text: str
    learner_reply: str | None
    alert: bool
    source: Source = "learner"

    @property
    def safe(self) -> bool:
        return self.severity == "none"


REPLIES: dict[Category, str] = {
    Category.SELF_HARM: (
        "I'm really glad you told me. That sounds really hard, and you don't have to deal with it "
        "on your own. Please talk to a grown-up you trust, like your teacher or someone at home, "
        "today. They will want to help you."
    ),
    Category.VIOLENCE: (
        "It sounds like you're having some really big feelings. Please talk to your teacher or "
        "another grown-up you trust about what's going on. When you're ready, we can carry on "
        "with our lesson."
    ),
    Category.SEXUAL: "That's not something we can talk about here. Let's get back to our lesson.",
    Category.HATE: (
        "Words like that can really hurt people, so let's keep our words kind. Let's get back to our lesson."
    ),
    Category.DRUGS: (
        "That's not something I can help with. A grown-up you trust, like a parent, teacher or "
        "doctor, is the right person to ask. Let's get back to our lesson."
    ),
    Category.BULLYING: (
        "I'm sorry that's happening to you. It's not your fault, and you don't have to deal with it "
        "alone. Please tell your teacher or another grown-up you trust, so they can help."
    ),
    Category.PERSONAL_DATA: "You don't need to tell me that. Let's keep it private.",
}
"""The calm redirection for each category, said to the learner instead of a reply."""

_DISCLOSURE_REPLY = (
    "Thank you for telling me. It's not your fault. Please tell your teacher or another grown-up "
    "you trust as soon as you can, so they can help keep you safe."
)
_NOT_HERE_REPLY = "That's not something I can help with. Let's get back to our lesson."
_BE_KIND_REPLY = (
    "Let's be kind to each other. If something is bothering you, you can always talk to your "
    "teacher. Now, back to our lesson."
)
TUTOR_REPLACEMENT = "Let's get back to our lesson."
"""Said instead of an unsafe sentence the tutor (an LLM) produced."""

# Bounded building blocks: every repetition has a limit, so no pattern can
# backtrack quadratically on long input.
_S = r"\W{1,5}"  # what separates two words
_WORD = r"[\w']{1,30}"


def _gap(words: int) -> str:
    return rf"(?:{_WORD}{_S}){{0,{words}}}?"


def _any(*alternatives: str) -> str:
    return "(?:" + "|".join(alternatives) + ")"


_I = r"\b(?:i|i'm|im|i've|ive|i'll|ill|i'd|we|we're|we'll|me\W{1,3}and\W{1,3}\w{1,30})\b"
_INTENT = _any(
    r"will", r"'ll", r"gonna", r"going\W{1,3}to", r"want\W{1,3}to", r"wanna", r"would\W{1,3}like\W{1,3}to",
    r"'d\W{1,3}like\W{1,3}to", r"plan\W{1,3}to", r"(?:am|'m|are|'re)\W{1,3}(?:going\W{1,3}to|gonna)",
    r"should", r"need\W{1,3}to", r"have\W{1,3}to", r"feel\W{1,3}like", r"could",
)
_PEOPLE = (
    r"(?:teacher|brother|sister|mum|mom|mummy|mommy|dad|daddy|mother|father|parents?|friends?|"
    r"classmates?|kids?|boys?|girls?|man|woman|men|women|neighbou?rs?|family|class|principal|"
    r"headteacher|head|bully|bullies|cousins?|baby|grandma|grandpa|nan|uncle|aunt|stepdad|stepmum|"
    r"stepmom|coach|tutor|students?|children|child|people|person|guy|lady)"
)
_TARGET = _any(
    r"you", r"him", r"her", r"them", r"everyone", r"everybody", r"some(?:one|body)", r"people", r"y'?all",
    rf"(?:my|the|that|this|his|her|our|your|their|those|these|a|some|all\W{{1,3}}the){_S}(?:{_WORD}{_S})?{_PEOPLE}\b",
    r"(?P<name>[a-z]{2,20})\b",  # a name: checked for a capital in the original text
)
_HURT = _any(
    r"kill", r"murder", r"stab", r"shoot", r"strangle", r"choke", r"punch", r"beat\W{1,3}up", r"hurt",
    r"attack", r"smash", r"bash", r"slap", r"poison", r"burn", r"kick", r"knife",
)
_SUBJECT = _any(
    r"they", r"he", r"she", r"people", r"everyone", r"everybody", r"some(?:one|body)", r"kids", r"boys",
    r"girls", r"children", rf"(?:my|the|some|other|older|a){_S}(?:{_WORD}{_S})?{_PEOPLE}",
)
_ME = r"\b(?:i|i'm|im|i\W{1,3}am|i've|ive|i\W{1,3}feel|i\W{1,3}just|i\W{1,3}really)\b"
_STREET_DRUGS = (
    r"(?:weed|marijuana|cannabis|cocaine|meth|crystal\W{1,3}meth|heroin|ecstasy|mdma|molly|lsd|"
    r"ketamine|shrooms|magic\W{1,3}mushrooms|fentanyl|crack\W{1,3}cocaine|drugs)"
)
_US = r"\b(?:i|i'm|im|me|we|you|u|let's|lets|let\W{1,3}us)\b"
_GROUPS = (
    r"(?:jews|jewish\W{1,3}people|muslims|christians|hindus|sikhs|blacks|black\W{1,3}people|"
    r"whites|white\W{1,3}people|asians|asian\W{1,3}people|mexicans|immigrants|refugees|gays|"
    r"gay\W{1,3}people|lesbians|trans\W{1,3}people|transgender\W{1,3}people|disabled\W{1,3}people|"
    r"arabs|africans|gypsies|travellers|foreigners|indians|chinese\W{1,3}people|women)"
)
_SLURS = (
    r"nigg(?:er|ers|a|as|az)|faggots?|kikes?|spics?|wetbacks?|trann(?:y|ies)|retards?|retarded|pakis?|"
    r"gooks?|towelheads?|ragheads?|beaners?|chinks?(?!\W{1,3}in\W{1,3}(?:the|his|her|its|their|our|my)\W{1,3}armou?r)"
)


@dataclass(frozen=True, slots=True)
class _Rule:
    """Patterns written in lower case, run on the ASCII-lowercased text.

    Case-sensitive matching would be slower several times over (no literal
    prefix scan); the one place case matters, a target named by a capitalised
    word, is checked against the original text afterwards.
    """

    category: Category
    severity: Severity
    alert: bool
    pattern: re.Pattern[str]
    reply: str
    sources: frozenset[str]

    def search(self, lower: str, original: str) -> re.Match[str] | None:
        for match in self.pattern.finditer(lower):
            name = match.groupdict().get("name")
            if name is None or original[match.start("name")].isupper():
                return match
        return None


def _rule(category: Category, severity: Severity, alert: bool, *patterns: str,
          reply: str | None = None, sources: tuple[str, ...] = ("learner", "tutor")) -> _Rule:
    return _Rule(category, severity, alert, re.compile(_any(*patterns)), reply or REPLIES[category],
                 frozenset(sources))


# Most serious first: the first rule that matches decides the verdict.
_RULES: list[_Rule] = [
    _rule(
        Category.SELF_HARM, "high", True,
        r"\b(?:kill(?:ing)?|hang(?:ing)?|off(?:ing)?|drown(?:ing)?|shoot(?:ing)?)\W{1,3}my\W{0,3}self\b",
        r"\bend(?:ing)?\W{1,3}(?:it\W{1,3}all|my\W{1,3}(?:own\W{1,3})?life)\b",
        r"\bsuicidal\b",
        r"\b(?:want|wanna|going|gonna|think(?:ing)?\W{1,3}(?:about|of)|plan(?:ning)?|tried|try(?:ing)?)"
        r"\W{1,3}(?:to\W{1,3})?(?:commit(?:ting)?\W{1,3})?suicide\b",
        rf"{_ME}{_S}{_gap(3)}(?:want|wanna|wish|going|gonna|ready|deserve)\W{{1,3}}(?:to\W{{1,3}})?"
        r"(?:die|be\W{1,3}dead)\b(?!\W{1,3}(?:of|from|laughing|with\W{1,3}laughter))",
        r"\bwish\W{1,3}i\W{1,3}(?:was|were|am|could\W{1,3}be)\W{1,3}dead\b",
        r"\bwish\W{1,3}i\W{1,3}(?:had\W{1,3}|was\W{1,3}|were\W{1,3})?(?:never|not|n't)\W{1,3}(?:been\W{1,3})?born\b",
        r"\bwish\W{1,3}i\W{1,3}(?:was|were)(?:n't|\W{1,3}not)\W{1,3}(?:alive|here\W{1,3}any\W{0,3}more)\b",
        r"\b(?:don't|dont|do\W{1,3}not)\W{1,3}want\W{1,3}to\W{1,3}(?:live|be\W{1,3}alive|exist|wake\W{1,3}up)"
        r"\b(?!\W{1,3}(?:in|on|at|with|near|there|here|like|by|without)\b)",
        r"\bno(?:thing)?\W{1,3}(?:reason|point)\W{1,3}(?:to|in|of)\W{1,3}(?:live|living|being\W{1,3}alive)\b",
        r"\bbetter\W{1,3}off\W{1,3}without\W{1,3}me\b",
        r"\b(?:nobody|no\W{1,3}one|noone)\W{1,3}would\W{1,3}(?:miss\W{1,3}me|care\W{1,3}if\W{1,3}i\W{1,3}died)\b",
        r"\b(?:cutting|hurting|harming|burning|starving)\W{1,3}myself\b",
        r"\b(?:want|wanna|going|gonna|try|tried|trying|like)\W{1,3}(?:to\W{1,3})?(?:cut|hurt|harm|burn|starve)"
        r"\W{1,3}myself\b",
        r"\b(?:cut|hurt|harm|burn)\W{1,3}myself\W{1,3}on\W{1,3}purpose\b",
        rf"{_ME}{_S}{_gap(2)}self\W{{0,3}}harm",
    ),
    _rule(
        Category.SEXUAL, "high", True,
        rf"\btouch(?:ed|es|ing)?\W{{1,3}}(?:me|my){_S}{_gap(3)}(?:private|privates|down\W{{1,3}}there|there|"
        r"under\W{1,3}my|inappropriately|in\W{1,3}a\W{1,3}bad\W{1,3}way|where\W{1,3}i\W{1,3}don't)",
        rf"\basked\W{{1,3}}me{_S}{_gap(3)}(?:pic(?:ture)?s?|photos?|selfies?|videos?)\W{{1,3}}of\W{{1,3}}"
        r"(?:me|myself|my\W{1,3}body)\b",
        r"\bsend\W{1,3}(?:me\W{1,3})?(?:a\W{1,3})?(?:naked\W{1,3})?(?:pic(?:ture)?s?|photos?|selfies?)"
        r"\W{1,3}of\W{1,3}(?:you|yourself|your\W{1,3}body)\b",
        r"\b(?:keep|kept)\W{1,3}(?:it|this|our\W{1,3}\w{1,20})\W{1,3}(?:a\W{1,3})?secret\W{1,3}from\W{1,3}"
        r"(?:your|my)\W{1,3}(?:parents|mum|mom|dad|teacher|family)\b",
        reply=_DISCLOSURE_REPLY,
    ),
    _rule(
        Category.VIOLENCE, "high", True,
        rf"{_I}(?:{_S}{_gap(2)})?{_INTENT}{_S}{_gap(1)}{_HURT}(?:\W{{1,3}}and\W{{1,3}}{_HURT})?{_S}{_TARGET}",
        r"\b(?:bring|bringing|brought|take|taking|took|carry|carrying)\W{1,3}(?:a|my|his|her|the|their|our)?"
        rf"\W{{0,3}}(?:{_WORD}{_S})?(?:gun|knife|knives|weapon|pistol|rifle|bomb|machete)s?{_S}{_gap(2)}"
        r"(?:to|in(?:to)?|at)\W{1,3}(?:the\W{1,3}|my\W{1,3}|our\W{1,3})?school\b",
        r"\b(?:shoot(?:ing)?\W{1,3}up|blow(?:ing)?\W{1,3}up|bomb(?:ing)?|attack(?:ing)?)\W{1,3}"
        r"(?:the\W{1,3}|my\W{1,3}|our\W{1,3}|this\W{1,3})?(?:school|class(?:room)?)\b",
    ),
    _rule(
        Category.BULLYING, "high", True,
        r"\b(?:i'm|im|i\W{1,3}am|i\W{1,3}get|i\W{1,3}got|i\W{1,3}was|i've\W{1,3}been|i\W{1,3}have\W{1,3}been|"
        rf"i\W{{1,3}}keep\W{{1,3}}getting|being){_S}{_gap(1)}bullied\b",
        r"\bbull(?:y|ies|ying|ied)\W{1,3}me\b",
        rf"\b{_SUBJECT}{_S}{_gap(2)}(?:pick(?:s|ed|ing)?\W{{1,3}}on|(?:make|makes|made|making)\W{{1,3}}fun\W{{1,3}}of|"
        r"laugh(?:s|ed|ing)?\W{1,3}at|beat(?:s|ing)?|hit(?:s|ting)?|kick(?:s|ed|ing)?|push(?:es|ed|ing)?|"
        r"punch(?:es|ed|ing)?|slap(?:s|ped|ping)?|tease(?:s|d)?|teasing|threaten(?:s|ed|ing)?|hurt(?:s|ing)?)"
        r"\W{1,3}me\b",
        rf"\b{_SUBJECT}{_S}{_gap(2)}call(?:s|ed|ing)?\W{{1,3}}me\W{{1,3}}(?:\w{{1,20}}\W{{1,3}})?names\b",
        r"\b(?:nobody|no\W{1,3}one|noone)\W{1,3}(?:likes|wants\W{1,3}to\W{1,3}play\W{1,3}with|talks\W{1,3}to|"
        r"sits\W{1,3}with|plays\W{1,3}with)\W{1,3}me\b",
        r"\b(?:everyone|everybody)\W{1,3}hates\W{1,3}me\b",
        r"\bi\W{1,3}(?:have|got|'ve\W{1,3}got)\W{1,3}no\W{1,3}friends\b",
        sources=("learner",),
    ),
    _rule(
        Category.HATE, "high", True,
        rf"\b(?:{_SLURS})\b",
        r"\b(?:kill\W{1,3}your\W{0,3}self|kys|go\W{1,3}die|(?:you|he|she|they)\W{1,3}should\W{1,3}(?:just\W{1,3})?"
        r"(?:die|kill\W{1,3}(?:your|him|her|them)\W{0,3}sel(?:f|ves)))\b",
        rf"\b(?:all\W{{1,3}})?(?:the\W{{1,3}})?{_GROUPS}\W{{1,3}}(?:are|should|must|deserve\W{{1,3}}to)"
        rf"\W{{1,3}}{_gap(2)}"
        r"(?:die|be\W{1,3}killed|dead|killed|animals|vermin|rats|pigs|subhuman|inferior|evil|disgusting|"
        r"terrorists|criminals|go\W{1,3}back|be\W{1,3}gassed|burn)\b",
        r"\bgo\W{1,3}back\W{1,3}to\W{1,3}your\W{1,3}(?:own\W{1,3})?country\b",
    ),
    _rule(
        Category.SEXUAL, "high", True,
        r"\b(?:porn\w{0,10}|xxx|nudes|nude\W{1,3}(?:pic(?:ture)?s?|photos?|selfies?|videos?)|"
        r"naked\W{1,3}(?:pic(?:ture)?s?|photos?|selfies?|videos?)|sexting|sext|sex\W{1,3}(?:video|tape|chat|pics?)|"
        r"blow\W{0,3}jobs?|hand\W{0,3}jobs?|masturbat\w{0,10}|orgasm\w{0,5}|onlyfans)\b",
        r"\b(?:have|having|had|has|want|wanna)\W{1,3}(?:\w{1,20}\W{1,3})?sex\b"
        r"(?!\W{1,3}(?:cells?|organs?|chromosomes?|hormones?|determination|linked|of\b|ratio))",
    ),
    _rule(
        Category.DRUGS, "low", True,
        rf"{_US}{_S}{_gap(3)}"
        r"(?:smok|buy|sell|sold|bought|get|got|try|tri|do|did|snort|inject|deal|scor|cook|make|tak|took)"
        rf"\w{{0,4}}\W{{1,3}}(?:some\W{{1,3}})?{_STREET_DRUGS}\b",
        rf"{_US}{_S}{_gap(3)}(?:get|getting|got)\W{{1,3}}(?:so\W{{1,3}}|really\W{{1,3}})?"
        r"(?:high|stoned|wasted|baked|drunk|hammered)\b"
        r"(?!\W{1,3}(?:score|scores|marks|grades|up|enough|ground|place|level|points|notes?)\b)",
        rf"{_US}{_S}{_gap(3)}(?:vape|vaping)\b",
        rf"{_US}{_S}{_gap(3)}(?:smoke|smoking)\W{{1,3}}(?:a\W{{1,3}}|some\W{{1,3}})?"
        r"(?:cigarettes?|cigs?|weed|joints?|blunts?)\b",
        r"\bwhere\W{1,3}(?:can|do|could)\W{1,3}(?:i|you|we)\W{1,3}(?:get|buy|find)\W{1,3}(?:some\W{1,3})?"
        rf"{_STREET_DRUGS}\b",
    ),
    _rule(
        Category.BULLYING, "low", True,
        r"\b(?:let's|lets|let\W{1,3}us|we\W{1,3}should|i'm\W{1,3}going\W{1,3}to|i'm\W{1,3}gonna|i'll|i\W{1,3}will|"
        r"i\W{1,3}want\W{1,3}to|gonna)\W{1,3}(?:\w{1,20}\W{1,3})?(?:bully|pick\W{1,3}on|make\W{1,3}fun\W{1,3}of|"
        r"gang\W{1,3}up\W{1,3}on|beat\W{1,3}up)\b",
        reply=_BE_KIND_REPLY,
    ),
    _rule(
        Category.HATE, "low", True,
        rf"\bi\W{{1,3}}(?:hate|can't\W{{1,3}}stand|despise)\W{{1,3}}(?:all\W{{1,3}})?{_GROUPS}\b",
    ),
    _rule(
        Category.VIOLENCE, "low", False,
        r"\bhow\W{1,3}(?:do|can|could|would|should)\W{1,3}(?:i|you|we|someone|one)\W{1,3}(?:make|build|get|buy|create)"
        rf"\W{{1,3}}(?:a\W{{1,3}}|an\W{{1,3}}|some\W{{1,3}})?(?:{_WORD}\W{{1,3}})?(?:bombs?|explosives?|guns?|weapons?|"
        r"molotovs?|grenades?|poisons?)\b",
        r"\bhow\W{1,3}to\W{1,3}(?:make|build|get|buy|create)\W{1,3}(?:a\W{1,3}|an\W{1,3}|some\W{1,3})?"
        r"(?:[\w']{1,30}\W{1,3})?(?:bombs?|explosives?|guns?|weapons?|molotovs?|grenades?|poisons?)\b",
        reply=_NOT_HERE_REPLY,
    ),
    _rule(
        Category.SEXUAL, "low", False,
        r"\b(?:sexy|horny|boobs|titties|tits)\b",
    ),
    _rule(
        Category.HATE, "low", False,
        r"\byou(?:'re|\W{1,3}are)\W{1,3}(?:so\W{1,3}|really\W{1,3}|such\W{1,3}an?\W{1,3}|an?\W{1,3})?"
        r"(?:stupid|dumb|worthless|useless|ugly|fat|an?\W{1,3}idiot|idiot|a\W{1,3}loser|loser|pathetic|hopeless)\b",
        r"\bshut\W{1,3}up\b",
        sources=("tutor",),
    ),
]

# Personal data.  Each detector yields (start, end, kind) spans of the cleaned text.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}", re.IGNORECASE)
_SPOKEN_EMAIL = re.compile(  # as speech recognition writes it: "sam dot smith at gmail dot com"
    r"(?<![\w.-])[\w.-]{1,64}(?:\s{1,3}(?:dot|underscore)\s{1,3}[\w-]{1,64}){0,3}"
    r"\s{1,3}(?:at|@)\s{1,3}[\w-]{1,63}(?:\s{1,3}dot\s{1,3}[\w-]{1,63}){0,3}"
    r"\s{1,3}dot\s{1,3}(?:com|org|net|edu|gov|co|uk|io|me|us|ca|au|de|fr|nz|ie|in|info|biz)\b",
    re.IGNORECASE,
)
_CARD = re.compile(
    r"(?<![\d-])(?:\d{13,19}"  # unbroken
    r"|\d{4}(?:[ -]\d{4}){2}[ -]\d{1,4}(?:[ -]\d{3})?"  # in fours, as printed on most cards
    r"|\d{4}[ -]\d{6}[ -]\d{4,5})(?![\d])"  # 4-6-5, as on American Express cards
)
_ID_NUMBER = re.compile(
    r"\b\d{3}-\d{2}-\d{4}\b"  # US social security number
    r"|\b(?-i:[A-CEGHJ-PR-TW-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D])\b"  # UK national insurance number
)
_PHONE = re.compile(
    r"(?<![\w+])\+\s?\d{1,3}(?:[\s.-]?\(?\d{1,5}\)?){1,5}(?!\w)"  # international
    r"|(?<![\w+])(?:1[\s.-]?)?(?:\([2-9]\d{2}\)|[2-9]\d{2})[\s.-]?\d{3}[\s.-]\d{4}(?!\w)"  # North American
    r"|(?<![\w+])0[1-9]\d{1,3}[\s.-]?\d{3,4}[\s.-]?\d{3,4}(?!\w)"  # national, with the trunk prefix 0
    r"|(?:(?:my|our|his|her|their|mum'?s|mom'?s|dad'?s|home|house|parents'?)\W{1,3}(?:[\w']{1,20}\W{1,3})?"
    r"(?:phone|mobile|cell|telephone|number)|call|text|ring|whatsapp|phone|tel)"
    r"(?:\W{1,3}(?:me|us|him|her|them))?(?:\W{1,3}number)?(?:\W{1,3}(?:is|on|at|it's|its))?[^\w+]{0,3}"
    r"(?P<v>(?:\+\s?)?\d(?:[\s.-]?\d){6,14})(?!\w)",  # any digits, after "my number is", "call me on"
    re.IGNORECASE,
)
_PASSWORD = re.compile(
    r"\b(?:(?:my|our|his|her|mum'?s|mom'?s|dad'?s|the\W{1,3}wi\W?fi|wi\W?fi|computer|ipad|tablet|phone|account|"
    r"email|school)\W{1,3}(?:[\w']{1,20}\W{1,3})?(?:password|passcode|pass\W?word|log\W?in)"
    r"(?:\W{1,3}for\W{1,3}[\w']{1,30})?\W{1,3}(?:is|was|=|:|it's)|password\s{0,3}[:=])\s{0,3}"
    r"(?P<v>[^\s,;!?\[][^\s,;!?]{0,63}(?:\s{1,3}(?!(?:and|but|so|because|or)\b)[^\s,;!?\[][^\s,;!?]{0,63}){0,2})",
    re.IGNORECASE,
)
_PIN = re.compile(
    r"\b(?:my|our|his|her|mum'?s|mom'?s|dad'?s|card|bank|phone)\W{1,3}pin(?:\W{1,3}(?:number|code))?"
    r"\W{1,3}(?:is|was|=|:|it's)\W{1,3}(?P<v>\d{3,8})\b",
    re.IGNORECASE,
)
_STREET_SUFFIX = (
    r"(?:street|st|road|rd|avenue|ave|lane|ln|boulevard|blvd|crescent|terrace|gardens|parkway|highway|hwy)\b\.?"
)
_NAME_SUFFIX = r"(?-i:(?:Drive|Dr|Court|Ct|Close|Way|Place|Pl|Square|Sq|Grove|Row|Walk|Hill|Mews|Circle|Park))\b\.?"
_NOT_NAME = r"(?!(?:the|a|an|on|in|of|to|at|and|or|by|for|my|your|with|from)\b)"
_STREET = re.compile(
    rf"\b\d{{1,5}}[a-z]?(?:[-/]\d{{1,5}})?,?\s{{1,3}}(?:{_NOT_NAME}[a-z][\w'-]{{0,30}}\s{{1,3}}){{1,3}}{_STREET_SUFFIX}"
    rf"|\b\d{{1,5}}[a-z]?,?\s{{1,3}}(?:(?-i:[A-Z])[\w'-]{{0,30}}\s{{1,3}}){{1,3}}{_NAME_SUFFIX}",
    re.IGNORECASE,
)
_ADDRESS_CUE = re.compile(
    r"\bi\W{1,3}live\W{1,3}(?:at|on)\s{1,3}(?P<v>(?=\w)(?=[^.;!?\n]{0,60}?(?:\d|(?-i:[A-Z])))[^.,;!?\n]{3,60})"
    r"|\b(?:my|our|home)\W{1,3}address\W{1,3}is\s{1,3}(?P<w>(?=\w)[^.;!?\n]{3,80})",
    re.IGNORECASE,
)
_POSTCODE = re.compile(
    r"\b(?-i:[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2})\b"
    r"|\b(?:zip|post)\W{0,3}code\W{1,3}(?:is\W{1,3})?(?P<v>\d{5}(?:-\d{4})?)\b",
    re.IGNORECASE,
)
_CAPITALISED = r"(?-i:[A-Z][a-z'-]{1,30})"
_FULL_NAME = re.compile(
    rf"\b(?:my\W{{1,3}}name\W{{1,3}}is|my\W{{1,3}}name's|call\W{{1,3}}me)\s{{1,3}}"
    rf"(?P<v>{_CAPITALISED}(?:\s{{1,3}}{_CAPITALISED}){{1,3}})"
    r"|\bmy\W{1,3}(?:full\W{1,3}name|surname|last\W{1,3}name|family\W{1,3}name|second\W{1,3}name)\W{1,3}is\s{1,3}"
    r"(?P<w>[a-z][a-z'-]{0,29}(?:\s{1,3}(?!(?:and|but|so|i|i'm|im)\b)[a-z][a-z'-]{0,29}){0,3})",
    re.IGNORECASE,
)
_FIRST_NAME = re.compile(r"\bmy\W{1,3}name\W{1,3}is\s{1,3}(?P<v>[a-z][a-z'-]{0,29})", re.IGNORECASE)

_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _clean(text: str) -> str:
    """Undo the cheap disguises: compatibility forms, invisible characters, curly quotes."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).translate(_QUOTES)


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _is_card(candidate: str) -> bool:
    """Card-shaped digits that pass the Luhn check and start like a real card (2 to 6)."""
    digits = re.sub(r"\D", "", candidate)
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and len(set(digits)) > 1 and _luhn(digits)


def _card_span(match: re.Match[str]) -> tuple[int, int] | None:
    """The card number in a card-shaped match: all of it, or its first four groups (a number may follow)."""
    groups = list(re.finditer(r"\d+", match.group()))
    for end in ([match.end()] + ([match.start() + groups[3].end()] if len(groups) == 5 else [])):
        if _is_card(match.string[match.start() : end]):
            return match.start(), end
    return None


def _phone_span(match: re.Match[str]) -> tuple[int, int] | None:
    start, end = _value_span(match)
    number = match.string[start:end]
    digits = sum(char.isdigit() for char in number)
    return (start, end) if (8 if number.startswith("+") else 7) <= digits <= 15 else None


def _value_span(match: re.Match[str]) -> tuple[int, int]:
    """The span of the data itself: the named group ``v`` or ``w`` when the pattern has a cue before it."""
    for group in ("v", "w"):
        if group in match.re.groupindex and match.group(group) is not None:
            return match.span(group)
    return match.span()


class _Spans:
    """Non-overlapping (start, end, kind) spans, sorted, so hostile text with thousands stays cheap."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.spans: list[tuple[int, int, str]] = []

    def add(self, start: int, end: int, kind: str) -> None:
        """Keep the span unless it overlaps another kind; merge it with overlapping spans of its kind."""
        first = bisect.bisect_left(self.starts, start)
        if first and self.spans[first - 1][1] > start:
            first -= 1
        last = first
        while last < len(self.spans) and self.spans[last][0] < end:
            last += 1
        overlapping = self.spans[first:last]
        if start >= end or any(span[2] != kind for span in overlapping):
            return
        merged = (min([start, *(s for s, _, _ in overlapping)]), max([end, *(e for _, e, _ in overlapping)]), kind)
        self.spans[first:last] = [merged]
        self.starts[first:last] = [merged[0]]


# In order of precedence: a span already claimed by an earlier kind is not taken by a later one.
_DETECTORS: list[tuple[re.Pattern[str], str, Callable[[re.Match[str]], tuple[int, int] | None]]] = [
    (_EMAIL, "email", _value_span),
    (_SPOKEN_EMAIL, "email", _value_span),
    (_CARD, "card", _card_span),
    (_ID_NUMBER, "id number", _value_span),
    (_PHONE, "phone", _phone_span),
    (_PASSWORD, "password", _value_span),
    (_PIN, "password", _value_span),
    (_STREET, "address", _value_span),
    (_ADDRESS_CUE, "address", _value_span),
    (_POSTCODE, "address", _value_span),
    (_FULL_NAME, "name", _value_span),
]


def _personal_spans(text: str) -> list[tuple[int, int, str]]:
    found = _Spans()
    for pattern, kind, accept in _DETECTORS:
        for match in pattern.finditer(text):
            span = accept(match)
            if span:
                found.add(*span, kind)
    if any(kind == "address" for *_, kind in found.spans):  # a first name beside an address identifies a child
        for match in _FIRST_NAME.finditer(text):
            found.add(*_value_span(match), "name")
    return found.spans


def _redact_clean(text: str) -> tuple[str, list[str]]:
    parts, kinds, last = [], [], 0
    for start, end, kind in _personal_spans(text):
        parts += [text[last:start], f"[{kind}]"]
        kinds.append(kind)
        last = end
    parts.append(text[last:])
    return "".join(parts), kinds


def redact(text: str) -> str:
    """``text`` with every piece of personal data replaced by a placeholder such as ``[email]``."""
    return _redact_clean(_clean(text))[0]


def check(text: str, *, source: Source = "learner") -> SafetyVerdict:
    """The local verdict on one utterance (``source="learner"``) or one tutor sentence (``"tutor"``).

    For the learner, ``learner_reply`` is the category's redirection and
    ``alert`` follows the rule (risk to the learner or others).  For the tutor,
    ``learner_reply`` is what to say instead: the redacted sentence when only
    personal data was found, else a neutral line back to the lesson; ``alert``
    is set for high-severity output so someone looks at the model.
    """
    clean = _clean(text)
    lower = clean.translate(_ASCII_LOWER)  # same length, so match offsets hold in ``clean``
    redacted, kinds = _redact_clean(clean)
    for rule in _RULES:
        if source not in rule.sources:
            continue
        match = rule.search(lower, clean)
        if match:
            tutor = source == "tutor"
            return SafetyVerdict(
                category=rule.category,
                severity=rule.severity,
                matched=clean[match.start() : match.end()],
                redacted_text=redacted,
                learner_reply=TUTOR_REPLACEMENT if tutor else rule.reply,
                alert=rule.severity == "high" if tutor else rule.alert,
                source=source,
            )
    if kinds:
        return SafetyVerdict(
            category=Category.PERSONAL_DATA,
            severity="low",
            matched=" ".join(dict.fromkeys(f"[{kind}]" for kind in kinds)),
            redacted_text=redacted,
            learner_reply=redacted if source == "tutor" else REPLIES[Category.PERSONAL_DATA],
            alert=False,
            source=source,
        )
    return SafetyVerdict(Category.NONE, "none", "", redacted, None, False, source)


# OpenAI's moderation categories, most serious first, as (name, category, severity).
_OPENAI_CATEGORIES: list[tuple[str, Category, Severity]] = [
    ("self-harm/intent", Category.SELF_HARM, "high"),
    ("self-harm/instructions", Category.SELF_HARM, "high"),
    ("self-harm", Category.SELF_HARM, "high"),
    ("sexual/minors", Category.SEXUAL, "high"),
    ("hate/threatening", Category.HATE, "high"),
    ("harassment/threatening", Category.VIOLENCE, "high"),
    ("violence/graphic", Category.VIOLENCE, "high"),
    ("illicit/violent", Category.VIOLENCE, "high"),
    ("sexual", Category.SEXUAL, "high"),
    ("violence", Category.VIOLENCE, "low"),
    ("hate", Category.HATE, "low"),
    ("harassment", Category.HATE, "low"),
    ("illicit", Category.DRUGS, "low"),
]
_SEVERITY_RANK = {"none": 0, "low": 1, "high": 2}


def _rank(verdict: SafetyVerdict) -> tuple[int, bool]:
    return _SEVERITY_RANK[verdict.severity], verdict.category is not Category.PERSONAL_DATA


def _from_openai(result: Any, local: SafetyVerdict, source: Source) -> SafetyVerdict:
    flags = result.categories.model_dump(by_alias=True)
    for name, category, severity in _OPENAI_CATEGORIES:
        if flags.get(name):
            tutor = source == "tutor"
            return SafetyVerdict(
                category=category,
                severity=severity,
                matched=f"openai:{name}",
                redacted_text=local.redacted_text,
                learner_reply=TUTOR_REPLACEMENT if tutor else REPLIES[category],
                alert=severity == "high",
                source=source,
            )
    return local


async def moderate_remote(text: str, client: Any, *, source: Source = "learner",
                          timeout_s: float = 2.0) -> SafetyVerdict:
    """The local verdict, sharpened by OpenAI's moderation endpoint through ``client``.

    ``client`` is an ``openai.AsyncOpenAI`` (or a blocking ``OpenAI``, called in
    a thread).  Only the redacted text leaves the machine, and not at all when
    the local filter already found something serious.  Any failure or a reply
    slower than ``timeout_s`` falls back to the local verdict: moderation must
    never leave the learner waiting or silent.
    """
    local = check(text, source=source)
    if local.severity == "high":
        return local
    create = client.moderations.create
    try:
        if inspect.iscoroutinefunction(create):
            call = create(input=local.redacted_text)
        else:
            call = asyncio.to_thread(create, input=local.redacted_text)
        response = await asyncio.wait_for(call, timeout_s)
        remote = _from_openai(response.results[0], local, source)
    except Exception as error:  # noqa: BLE001 - any failure of the endpoint means "use the local verdict"
        log.warning("moderation endpoint failed, using the local filter: %r", error)
        return local
    return remote if _rank(remote) > _rank(local) else local


class SafeTutor:
    """Any ``Tutor``, with the learner's words checked going in and its reply checked coming out.

    An unsafe learner turn never reaches the inner tutor: the learner hears the
    calm redirection instead.  Personal data is different: the learner hears a
    reminder to keep it private, and the inner tutor gets the redacted text, so
    the turn still counts (an answer given alongside a name) and no personal
    data reaches a remote LLM.  The inner reply is re-cut into sentences and
    each is checked before it is passed on; the first unsafe one is replaced by
    a line back to the lesson and the rest of that reply is dropped.  Personal
    data in a reply is redacted.  ``on_alert(verdict)`` is called for every
    verdict with ``alert`` set, from either direction.  With
    ``moderation_client`` the learner's words also go through
    ``moderate_remote``; the tutor's sentences are checked locally only, so a
    reply is not slowed down by a round trip per sentence.  A learner turn
    longer than ``max_chars`` (typed or pasted, never spoken: 25 seconds of
    speech is a few hundred characters) is cut to that length first, so
    hostile input costs milliseconds and never reaches the inner tutor whole.
    """

    def __init__(self, inner: Tutor, on_alert: Callable[[SafetyVerdict], object] | None = None, *,
                 moderation_client: Any = None, moderation_timeout_s: float = 2.0, max_chars: int = 2000):
        self.inner = inner
        self.name = f"{inner.name} (safety filtered)"
        self._on_alert = on_alert or (lambda verdict: log.warning("safety alert: %s", verdict.category))
        self._client = moderation_client
        self._timeout_s = moderation_timeout_s
        self._max_chars = max_chars

    async def opening(self, context: DialogueContext) -> AsyncIterator[str]:
        async for piece in self._filtered(self.inner.opening(context)):
            yield piece

    async def respond(self, learner_text: str, context: DialogueContext) -> AsyncIterator[str]:
        learner_text = learner_text[: self._max_chars]
        if self._client is not None:
            verdict = await moderate_remote(learner_text, self._client, timeout_s=self._timeout_s)
        else:
            verdict = check(learner_text)
        self._alert(verdict)
        if verdict.category is Category.PERSONAL_DATA:
            yield f"{verdict.learner_reply} "
            learner_text = verdict.redacted_text
        elif not verdict.safe:
            yield verdict.learner_reply or TUTOR_REPLACEMENT
            return
        async for piece in self._filtered(self.inner.respond(learner_text, context)):
            yield piece

    async def _filtered(self, stream: AsyncIterator[str]) -> AsyncIterator[str]:
        chunker = SentenceChunker()
        try:
            async for piece in stream:
                for sentence in chunker.push(piece):
                    safe, go_on = self._checked(sentence)
                    yield safe
                    if not go_on:
                        return
            for sentence in chunker.flush():
                safe, go_on = self._checked(sentence)
                yield safe
                if not go_on:
                    return
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    def _checked(self, sentence: str) -> tuple[str, bool]:
        """The sentence to pass on (with its trailing space), and whether the reply may go on."""
        verdict = check(sentence, source="tutor")
        if verdict.safe:
            return f"{sentence} ", True
        self._alert(verdict)
        if verdict.category is Category.PERSONAL_DATA:
            return f"{verdict.redacted_text} ", True
        return f"{TUTOR_REPLACEMENT} ", False

    def _alert(self, verdict: SafetyVerdict) -> None:
        if not verdict.alert:
            return
        try:
            self._on_alert(verdict)
        except Exception:  # a broken alert hook must not silence the tutor
            log.exception("safety alert hook failed")
