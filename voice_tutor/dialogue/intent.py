"""What a learner's words are, before anything is graded.

While a question is pending, a turn may be an answer, but it may just as well
be a question of the learner's own ("why do heavier things not fall
faster"), a request (a hint, the question again, skip it, slower), a rating of
the tutor, a remark about something else, or a greeting.  Only a single,
asserted answer may be graded: a hedged list ("maybe eleven or twelve"),
several options, or an option only negated ("not oxygen") asserts nothing,
so the tutor asks the learner to pick one.  A single tentative answer ("is it
twelve?", "maybe twelve") is an answer: a tutor takes it and says whether it
is right.  A word that only sounds like the
right answer ("well" for "twelve"), or a transcript the recognizer itself
doubted, is confirmed before it is judged.

:func:`understand` is pure text processing over what speech recognition
writes (no capitals or question marks, fillers, repeated words, slips); it
returns an :class:`Understanding` that the tutor acts on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction

from rapidfuzz import fuzz

from voice_tutor.dialogue.answers import Request, classify_request, detect_trigger, normalize, numbers_in, parse_number
from voice_tutor.dialogue.feedback import spoken_rating
from voice_tutor.learning.lessons import Question


class Intent(Enum):
    ANSWER = "answer"
    """One asserted answer: grade it."""
    CHOOSE = "choose"
    """Several candidates, a hedged list or only negated options: ask the learner to pick one."""
    CONFIRM = "confirm"
    """Probably an answer, but the tutor is not sure it heard it: ask "did you say …?"."""
    QUESTION = "question"
    REQUEST = "request"
    FEEDBACK = "feedback"
    OFF_TOPIC = "off_topic"
    SOCIAL = "social"
    """A greeting, thanks, "okay", "yes": talk about the talk, not an answer."""
    EMPTY = "empty"


@dataclass(frozen=True, slots=True)
class Understanding:
    intent: Intent
    candidates: tuple[str, ...] = ()
    """The answer(s) asserted, as the learner said them (ANSWER: one; CHOOSE: the options heard; CONFIRM: the
    accepted answer it sounded like)."""
    request: Request | None = None
    trigger: str | None = None
    """The lesson rule trigger the words fire (``upset``, ``does_not_understand``, ``asks_for_answer``)."""
    rating: int | None = None
    """FEEDBACK: +1, -1, or None when the feedback is neither clearly."""
    graded_text: str = ""
    """ANSWER: the words to grade (negated options and restated question removed)."""


UNSURE_CONFIDENCE = 0.25
"""Below this recognizer confidence (the mean token probability of the transcript), an answer is confirmed.

On 350 spoken answers (5 voices, benchmarks/spoken_judgement.py's material) 15 fell below 0.35, 10 of
them misheard; but correctly heard short answers often score 0.3-0.45 (piper's clear "twelve" and
"seventeen" with the answer hotwords: 0.36 and 0.32), and 0.35 asked "did you say twelve?" of them.
Most mishearings score higher still: this only catches the doubtful ones; near misses are confirmed
by what was heard, not by this score."""
NEAR_MISS = 70
"""rapidfuzz ratio from which a heard word that is no answer counts as a slip for an accepted one."""
NEAR_MISS_IN_ANSWER_PLACE = 60
"""The same, for a word said where an answer goes ("the answer is well", or the whole turn)."""
_MATCH = 85
"""The ratio at which a heard phrase is an option (the same as ``answers.check_answer``)."""

_FILLERS = {"um", "umm", "uh", "uhh", "erm", "er", "hmm", "hm", "mm", "mmm", "ah", "eh", "oh", "like"}
_NEGATION_BEFORE = re.compile(
    r"(?:\b(?:not|isn ?t|isnt|wasn ?t|aren ?t|doesn ?t|don ?t|didn ?t|won ?t|can ?t|never|nor|neither)(?:\s+\w+){0,2}"
    r"|\bno)\s*$"
)
"""A negation just before an option ("not oxygen", "it isn't the nucleus", "no carbon dioxide")."""
_CORRECTION = re.compile(r"\b(no wait|wait no|no no|sorry|i mean|actually|oops|i meant|rather|no sorry|wait)\b")
_SELF_CORRECTION_NO = re.compile(r"^(.*\S)\s+no\s+(?!idea\b|clue\b)(\S.*)$")
_QUESTION_START = re.compile(
    r"^(?:(?:and|but|so|okay|ok|wait|hey|also|then|oh|sir|miss|teacher|tutor|excuse me|sorry|quick question)\s+)*"
    r"(why|how|what|whats|what's|who|whom|whose|where|when|which|"
    r"do|does|did|can|could|would|will|should|shall|are|is|was|were|have|has|am|"
    r"is there|are there|i wonder|i want to know|i'?d like to know|tell me (?:why|how|what|about|more)|"
    r"explain|cómo|como|qué|que|por qué|porque|cuál|cual|dónde|donde|cuándo|cuando|quién|quien)\b(.*)$"
)
_ANSWER_AS_QUESTION = re.compile(
    r"^(?:is|was|would|could|will|should|might)\s+(?:it|that|the answer|the result|they|this|my answer)\b"
    r"|^(?:do|does)\s+(?:it|the \w+)\s+(?:stay|stays|slow|speed|halve|double|change|get|become)\b"
    r"|^(?:are|is) (?:they|those|these|it) (?:called|named)\b"
    r"|^(?:what|how) about\b"
    r"|^(?:could|might|would|will|should|must) be\b"
)
_OPEN_ANSWER_AS_QUESTION = re.compile(r"^(?:what|how) about\b")
"""Offers an answer only when one follows ("what about twelve"); else asks ("what about the numerator")."""
_ALL_OF_THEM = re.compile(r"^(?:\w+ )?(?:both(?: of them)?|all of them|all three|any of them|either(?: one)?|all of those)$")
_SOCIAL = re.compile(
    r"^(?:hi|hello|hey|hiya|good (?:morning|afternoon|evening)|thanks?|thank you(?: very much)?|cheers|"
    r"ok(?:ay)?|alright|all right|cool|nice|great|yay|wow|got it|i see|right|sure|fine|mhm|uh huh|yes|yeah|yep|"
    r"no|nope|nah|ready|i'?m ready|let'?s go|go on|go ahead|sounds good|me too|same|haha|lol)"
    r"(?:\s+(?:tutor|teacher|there|then|thanks|thank you|please|now|ready|i'm ready|let's go|let's start))*$"
)
_REQUESTS_MORE = [
    (Request.SKIP, re.compile(r"\b(skip( (it|this( one)?|that))?|next question|pass|move on|another question|"
                              r"can we do (a different|another) one|let'?s do another)\b")),
    (Request.SLOWER, re.compile(r"\b(slower|slow down|too fast|speak slowly|more slowly|not so fast|"
                                r"slowly please)\b")),
    (Request.REPEAT, re.compile(r"\b(what did you say|i didn'?t hear|didn'?t catch that|come again|louder|"
                                r"one more time|repeat the question|what'?s the question again|sorry what)\b")),
    (Request.HINT, re.compile(r"\b(give me a (hint|clue)|can i have a (hint|clue)|any hints?|i need help|"
                              r"i have no idea|no clue|i can'?t remember|i forgot|i forget|dunno|"
                              r"i'?m not sure|not sure)\b")),
]
_FEEDBACK = re.compile(
    r"\b(you('?re| are) (a )?((really|very|so|super) )?(good|great|nice|bad|boring|funny|awesome|helpful|the best)|"
    r"(that|this|it|your)( \w+)?( was| is|'?s) (a )?(great|good|nice|helpful|useful|confusing|boring|fun|"
    r"easy|hard|too hard|too easy|clear|unclear|cool|awesome|weird|a good (question|hint|explanation))|"
    r"i (liked|like|loved|love|enjoyed|hate|hated) (that|this|your|the) ?(question|hint|explanation|lesson|game)?|"
    r"good (hint|explanation|question)|nice (hint|explanation|question)|great (hint|explanation)|"
    r"(your|the) (hints?|explanations?|voice|questions?) (are|is|was|were) \w+|thumbs (up|down)|"
    r"(you|that|it) (explained?|explains) (it |that )?(well|badly|nicely|clearly)|"
    r"that (made|makes) (sense|no sense)|i (get|got|understand) it now|now i (get|understand) it|"
    r"you explain(ed)? (things |it |that )?(really |very |so )?(well|badly|nicely|clearly|too fast)|"
    r"(this|that|it)( lesson| question| game)? (is|was) (so |really |very |too )?(boring|fun|hard|easy|cool))\b"
)
_PERSONAL = re.compile(
    r"^(?:(?:and|but|so|oh|hey|guess what)\s+)*(i|ive|im|id|my|we|our|me|mine|you|your|let'?s|there'?s|it'?s (?:raining|sunny|"
    r"cold|hot|my)|yesterday|today|tomorrow|tonight|last night|can i|may i|i'?m (?:hungry|tired|bored|thirsty))\b"
)
_ANSWER_LEAD = re.compile(
    r"^(?:(?:i think|i believe|i'?d say|i guess|i know|i'?m sure|my answer is|the answer is|answer|it'?s|it is|"
    r"its|they'?re|they are|that'?s|that is|is it|is that|it|they|that|so|well|okay|ok|um|easy|simple|"
    r"oh|hmm|yes|yeah|no|would it be|could it be|it would be|it must be|must be|i know this|it equals|equals)\b\s*)+"
)

_ANSWER_TAIL = re.compile(r"(?:\s+(?:i think|i guess|maybe|right|i'?m not sure|please|por favor))+$")


@dataclass(frozen=True, slots=True)
class _Option:
    """A known answer of the pending question: accepted (group 0) or a misconception (group 1+)."""

    group: int
    words: list[str]


@dataclass
class _Span:
    group: int
    start: int
    end: int
    score: float
    said: str = field(default="")


def spoken_number(value: Fraction | str) -> str:
    """A number as a learner says it (``12`` -> "twelve", ``3/8`` -> "three eighths", ``3.14`` -> "three point one four")."""
    text = str(value).strip()
    if not re.fullmatch(r"-?\d+(?:\.\d+|/\d+)?", text):
        return text  # already words
    if "/" in text:
        top, bottom = (int(part) for part in text.split("/", 1))
        plural = top != 1
        names = {2: ("half", "halves"), 4: ("quarter", "quarters")}
        name = names.get(bottom, (_ordinal(bottom), _ordinal(bottom) + "s"))[1 if plural else 0]
        return f"{_cardinal(top)} {name}"
    if "." in text:
        whole, decimals = text.split(".", 1)
        return f"{_cardinal(int(whole or 0))} point {' '.join(_cardinal(int(d)) for d in decimals)}"
    return _cardinal(int(text))


_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINALS = {1: "first", 2: "second", 3: "third", 5: "fifth", 8: "eighth", 9: "ninth", 12: "twelfth"}


def _cardinal(n: int) -> str:
    if n < 0:
        return "minus " + _cardinal(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return f"{_ONES[n // 100]} hundred" + (f" and {_cardinal(rest)}" if rest else "")
    return str(n)


def _ordinal(n: int) -> str:
    if n in _ORDINALS:
        return _ORDINALS[n]
    word = _cardinal(n)
    return word[:-1] + "ieth" if word.endswith("y") else word + "th"


def answer_words(question: Question) -> list[str]:
    """How a learner would say the question's accepted answers: what recognition should expect.

    Not its anticipated wrong answers too: a longer prompt pulls everything said towards it (with
    "seventeen eighteen sixteen" Whisper heard a learner's "thumbs down" as "bum's down"), and
    biasing towards the right answer alone judged none of 80 spoken wrong answers right
    (benchmarks/spoken_judgement.py --all --limit 10).
    """
    said = []
    for answer in question.answers:
        if question.kind == "number" and parse_number(answer) is not None:
            said.append(spoken_number(answer))
        else:
            said.append(answer.strip("¿?¡! "))
    return list(dict.fromkeys(said))


_SPLIT_TEEN = re.compile(r"\b(thir|four|fif|six|seven|eigh|nine)\s+teen\b", re.IGNORECASE)
_SAME_WORD = {"yeah": "yes", "yep": "yes", "yup": "yes", "yea": "yes", "nope": "no", "nah": "no"}


def _clean(text: str, language: str) -> str:
    """The words normalized as answers are (number words as digits), without fillers or stuttered repeats."""
    text = _SPLIT_TEEN.sub(r"\1teen", text.replace("\u2019", "'"))
    text = " ".join(word for word in text.split() if word.lower().strip(",.!?;:") not in _FILLERS)
    words = normalize(text, language).split()
    kept: list[str] = []
    for word in words:
        word = _SAME_WORD.get(word, word)
        if word in _FILLERS:
            continue
        if kept and word == kept[-1] and not re.fullmatch(r"[\d./]+", word):
            continue
        kept.append(word)
    return " ".join(kept)


_CONTRACTION = re.compile(r"\b(don|doesn|didn|isn|wasn|aren|can|won|couldn|wouldn|i|it|that|what|you|they|let)"
                          r" (t|m|s|re|ll|ve|d)\b")
_APOSTROPHE_DROPPED = {"dont": "don't", "doesnt": "doesn't", "didnt": "didn't", "isnt": "isn't", "cant": "can't",
                       "wont": "won't", "im": "i'm", "ive": "i've", "whats": "what's", "thats": "that's",
                       "lets": "let's", "youre": "you're", "theyre": "they're"}


def _lower_words(text: str) -> str:
    """The words as phrase patterns expect them: lowercase, punctuation, fillers and stutters gone,
    contractions whole again ("i don t know", "dont" -> "don't")."""
    text = text.lower().replace("\u2019", "'").replace("¿", " ").replace("¡", " ")
    text = re.sub(r"[^\w' ]+", " ", text)
    text = _CONTRACTION.sub(lambda m: f"{m.group(1)}'{m.group(2)}" if m.group(2) != "t" or m.group(1) != "i"
                            else m.group(0), text)
    kept: list[str] = []
    for word in text.split():
        word = _APOSTROPHE_DROPPED.get(word, word)
        if word in _FILLERS or (kept and word == kept[-1]):
            continue
        kept.append(word)
    return " ".join(kept)


def understand(text: str, question: Question | None, language: str = "en",
               confidence: float | None = None) -> Understanding:
    """What the learner's turn is, given the pending question (None: no question pending)."""
    words = _lower_words(text)
    if not words:
        return Understanding(Intent.EMPTY)
    trigger = detect_trigger(words)
    request = classify_request(words + ("?" if text.strip().endswith("?") else ""))
    rating = spoken_rating(words)
    if rating is not None:
        return Understanding(Intent.FEEDBACK, rating=rating)
    if question is None:
        return _not_an_answer(words, text, request, trigger)
    only_answer = _is_only_answer(words, question, language)
    if (_QUESTION_START.match(words) and not _ANSWER_AS_QUESTION.match(words) and not only_answer
            and not _only_offers_an_answer(text, question, language)):
        more = _more_request(words)
        if request in (Request.REPEAT, Request.HINT) or more or trigger in ("asks_for_answer", "does_not_understand"):
            return Understanding(Intent.REQUEST, request=more or request, trigger=trigger)
        return Understanding(Intent.QUESTION, trigger=trigger)
    if request is Request.STOP and not only_answer:
        return Understanding(Intent.REQUEST, request=request, trigger=trigger)
    if _ALL_OF_THEM.search(words):
        return Understanding(Intent.CHOOSE)
    attempt = _answer_attempt(text, question, language)
    if attempt is not None:
        return _doubted(attempt, confidence)
    if _OPEN_ANSWER_AS_QUESTION.match(words):  # "what about the numerator": no answer in it, so a question
        return Understanding(Intent.QUESTION, trigger=trigger)
    if (request or trigger or _more_request(words) or _FEEDBACK.search(words) or _SOCIAL.match(_ANSWER_TAIL.sub("", words))
            or text.strip().endswith("?") and _QUESTION_START.match(words) and not _ANSWER_AS_QUESTION.match(words)):
        return _not_an_answer(words, text, request, trigger)
    near = _near_miss(words, question, language)
    if near is not None:
        return Understanding(Intent.CONFIRM, candidates=(near,), graded_text=near)
    if question.kind == "text":
        unknown = _unknown_text_answer(_after_last_correction(_clean(text, language)), question, language)
        if unknown is not None:
            return _doubted(unknown, confidence)
    return _not_an_answer(words, text, request, trigger)


def _only_offers_an_answer(text: str, question: Question, language: str) -> bool:
    """A yes/no question whose only content is a candidate answer ("is a twelve?", recognition's "is it"): an
    answer.  A wh-question ("what is momentum?") asks about its words even when they are an option."""
    if not re.match(r"^(?:is|was|are|were|do|does|did|could|would|will|should|can|might)\b", _lower_words(text)):
        return False
    attempt = _answer_attempt(text, question, language)
    if attempt is None or attempt.intent is not Intent.ANSWER:
        return False
    rest = f" {_clean(text, language)} "
    for candidate in attempt.candidates:
        rest = rest.replace(f" {candidate} ", " ")
    return not _content_words(rest)


def _doubted(attempt: Understanding, confidence: float | None) -> Understanding:
    """An answer the recognizer was unsure of is confirmed, not judged."""
    if attempt.intent is Intent.ANSWER and confidence is not None and confidence < UNSURE_CONFIDENCE:
        return Understanding(Intent.CONFIRM, candidates=attempt.candidates, graded_text=attempt.graded_text)
    return attempt


def _more_request(words: str) -> Request | None:
    return next((kind for kind, pattern in _REQUESTS_MORE if pattern.search(words)), None)


def _not_an_answer(words: str, text: str, request: Request | None, trigger: str | None) -> Understanding:
    more = _more_request(words)
    if _FEEDBACK.search(words) and not trigger and not more:  # "that was a good hint" rates, it asks for nothing
        return Understanding(Intent.FEEDBACK)
    if trigger in ("asks_for_answer", "does_not_understand", "upset"):
        return Understanding(Intent.REQUEST, request=request or more, trigger=trigger)
    if request is not None and request is not Request.QUESTION:
        return Understanding(Intent.REQUEST, request=request, trigger=trigger)
    if more is not None:
        return Understanding(Intent.REQUEST, request=more, trigger=trigger)
    if request is Request.QUESTION or _QUESTION_START.match(words) or text.strip().endswith("?"):
        return Understanding(Intent.QUESTION, trigger=trigger)
    if _FEEDBACK.search(words):
        return Understanding(Intent.FEEDBACK)
    if _SOCIAL.match(_ANSWER_TAIL.sub("", words)):
        return Understanding(Intent.SOCIAL)
    return Understanding(Intent.OFF_TOPIC, trigger=trigger)


def _is_only_answer(words: str, question: Question | None, language: str) -> bool:
    """Whether the whole turn is one of the question's known answers ("¿cuánto es?" answers a Spanish question)."""
    if question is None:
        return False
    heard = normalize(words, language)
    options = [*question.answers, *(a for m in question.misconceptions for a in m.answers)]
    return any(fuzz.ratio(heard, normalize(option, language)) >= _MATCH for option in options)


_ONE_AS_A_WORD = re.compile(
    r"\b(this|that|the|another|next|which|each|every|any|a different|no|other|easy|hard|tricky|new|last) one\b"
    r"|\bone (more|of|thing|question|sec|second|minute|moment)\b|\bno one\b|\bat once\b",
    re.IGNORECASE,
)
"""'one' that counts nothing ("skip this one", "one more time"): not a number answer."""


_TIMES = re.compile(r"\b(twice|double|triple|thrice)\b", re.IGNORECASE)
_TIMES_WORDS = {"twice": "two times", "double": "two times", "triple": "three times", "thrice": "three times"}


def _answer_attempt(text: str, question: Question, language: str) -> Understanding | None:
    """The answer the words assert, the several they offer, or None when they hold no answer."""
    text = _ONE_AS_A_WORD.sub(lambda m: m.group(0).replace("one", "_"), text)
    if question.kind == "number":
        text = _TIMES.sub(lambda m: _TIMES_WORDS[m.group(1).lower()], text)
    cleaned = _clean(text, language)
    cleaned = _after_last_correction(cleaned)
    if question.kind == "number":
        return _number_attempt(cleaned, question, language)
    return _text_attempt(cleaned, question, language)


def _after_last_correction(cleaned: str) -> str:
    """ "eleven sorry twelve" says twelve: only what follows the last self-correction counts."""
    parts = _CORRECTION.split(cleaned)
    if len(parts) > 1:
        tail = parts[-1].strip()
        if tail:
            return tail
    match = _SELF_CORRECTION_NO.match(cleaned)
    if match and re.search(r"[\d]", match.group(1)) and re.search(r"[\d]", match.group(2)):
        return match.group(2)
    return cleaned


_ABOUT_ONESELF = re.compile(
    r"^(?:(?:and|but|so|oh|hey|guess what)\s+)*(?:my|our|we|his|her|their|yesterday|today|last|there are|"
    r"there were|i have|i had|i'?m|i am|i was|i went|i live|im)\b"
    r"(?!\s+(?:(?:pretty|quite|very|so|really)\s+)?(?:sure|certain|thinking|guessing|going with|saying))"
)
"""A remark about the learner's own life ("my sister is five years old"): its numbers answer nothing."""


def _number_attempt(cleaned: str, question: Question, language: str) -> Understanding | None:
    if _ABOUT_ONESELF.match(cleaned) and len(cleaned.split()) > 3 and not re.search(r"\banswer\b", cleaned):
        return None
    tokens = cleaned.split()
    found: list[tuple[int, Fraction]] = []
    for index, token in enumerate(tokens):
        if re.fullmatch(r"-?\d+(?:\.\d+)?(?:/\d+)?", token):
            try:
                found.append((index, Fraction(token)))
            except (ValueError, ZeroDivisionError):
                continue
    if not found and language != "en":
        return _number_attempt(normalize(cleaned, "en"), question, "en")
    if not found:
        return None
    found = [(i, v) for n, (i, v) in enumerate(found)  # "seven, seven eighths": a false start
             if not (n + 1 < len(found) and found[n + 1][0] == i + 1 and v.denominator == 1
                     and "/" in tokens[i + 1] and tokens[i + 1].split("/")[0] == tokens[i])]
    asserted = [(i, v) for i, v in found if not _NEGATION_BEFORE.search(" ".join(tokens[:i]))]
    prompt_numbers = set(numbers_in(question.prompt))
    units = _restated(tokens, asserted, prompt_numbers)
    if asserted and not units:  # "seven plus five is well": the question said again, its answer unheard
        return None
    said = _as_written(tokens, units)  # one per value: "six eighths or three quarters" says one number
    if not said:
        return Understanding(Intent.CHOOSE, candidates=_as_written(tokens, found))
    if len(said) > 1:
        return Understanding(Intent.CHOOSE, candidates=said)
    return Understanding(Intent.ANSWER, candidates=said, graded_text=said[0])


def _as_written(tokens: list[str], numbers: list[tuple[int, Fraction]]) -> tuple[str, ...]:
    """Each distinct value as the learner said it first ("3/8", "3.14")."""
    first: dict[Fraction, str] = {}
    for index, value in numbers:
        first.setdefault(value, tokens[index])
    return tuple(first.values())


def _restated(tokens: list[str], asserted: list[tuple[int, Fraction]],
              prompt_numbers: set[Fraction]) -> list[tuple[int, Fraction]]:
    """The asserted numbers less those that only restate the question ("fifteen minus six is nine")."""
    if len(asserted) <= 1:
        return asserted
    operators = {"plus", "minus", "times", "add", "take", "away", "divided", "multiplied", "x", "+", "-"}
    restating = any(token in operators for token in tokens)
    if not restating:
        return asserted
    return [(i, v) for i, v in asserted if v not in prompt_numbers]


def _options(question: Question, language: str) -> list[_Option]:
    options = [_Option(0, normalize(a, language).split()) for a in question.answers]
    for group, misconception in enumerate(question.misconceptions, start=1):
        options += [_Option(group, normalize(a, language).split()) for a in misconception.answers]
    return [option for option in options if option.words]


def _spans(heard: list[str], options: list[_Option], threshold: float) -> list[_Span]:
    """Where each known option is said, the best-scoring reading of overlapping ones kept."""
    found: list[_Span] = []
    for option in options:
        target = " ".join(option.words)
        n = len(option.words)
        for size in {max(1, n - 1), n, n + 1}:
            for start in range(0, max(1, len(heard) - size + 1)):
                window = " ".join(heard[start : start + size])
                if not window:
                    continue
                score = fuzz.ratio(window, target)
                if score >= threshold:
                    found.append(_Span(option.group, start, start + size, score + len(target) / 100, window))
    found.sort(key=lambda span: -span.score)
    kept: list[_Span] = []
    for span in found:
        if all(span.end <= other.start or span.start >= other.end for other in kept):
            kept.append(span)
    return sorted(kept, key=lambda span: span.start)


def _text_attempt(cleaned: str, question: Question, language: str) -> Understanding | None:
    heard = cleaned.split()
    if not heard:
        return None
    spans = _spans(heard, _options(question, language), _MATCH)
    asserted = [s for s in spans if not _NEGATION_BEFORE.search(" ".join(heard[: s.start]))]
    groups = list(dict.fromkeys(s.group for s in asserted))
    if len(groups) > 1:
        return Understanding(Intent.CHOOSE, candidates=tuple(dict.fromkeys(s.said for s in asserted)))
    if groups:
        span = next(s for s in asserted if s.group == groups[0])
        rest = " ".join(heard[: span.start] + heard[span.end :])
        if re.search(r"\bor\b", rest) and _content_words(re.sub(r"\bor\b", " ", rest)):
            return Understanding(Intent.CHOOSE, candidates=(span.said, rest))
        if _hedges_a_list(cleaned):
            return Understanding(Intent.CHOOSE, candidates=(span.said,))
        return Understanding(Intent.ANSWER, candidates=(span.said,), graded_text=span.said)
    if spans:  # only negated options: nothing asserted
        return Understanding(Intent.CHOOSE, candidates=tuple(s.said for s in spans))
    return None


def _hedges_a_list(cleaned: str) -> bool:
    return bool(re.search(r"\b(all of them|any of them|one of (them|those|these)|either)\b", cleaned))


_STOP_WORDS = set(
    "a an the is it its it's are was were be to of in on at for and or but so i you he she we they my your this that "
    "these those what which who how why when where do does did not no yes think maybe just like really very with "
    "from by as if then than there here me him her them our their one".split()
)


def _content_words(text: str) -> list[str]:
    return [w for w in text.split() if w not in _STOP_WORDS and (len(w) > 1 or w.isdigit())]


def _unknown_text_answer(cleaned: str, question: Question, language: str) -> Understanding | None:
    """A short statement in an answer's place ("nitrogen", "i think it's hydrogen") is a wrong answer;
    a long one about something else, or a personal remark, is not an answer at all."""
    core = _ANSWER_TAIL.sub("", _ANSWER_LEAD.sub("", cleaned)).strip()
    if _PERSONAL.match(core):
        return None
    content = _content_words(core)
    if not content:
        return None
    longest_answer = max(len(normalize(a, language).split()) for a in question.answers)
    if len(core.split()) > max(4, longest_answer + 3):
        return None
    if re.search(r"\bor\b", core):
        return Understanding(Intent.CHOOSE, candidates=tuple(p.strip() for p in core.split(" or ") if p.strip()))
    return Understanding(Intent.ANSWER, candidates=(core,), graded_text=core)


def _near_miss(words: str, question: Question, language: str) -> str | None:
    """The accepted answer that words in the answer's place sound like ("well" for "twelve"), if any.

    Spelling similarity catches "chloro fill"; a rough sound key catches "sicks" for "six" and "mighty
    condria" for "mitochondria", which share few letters in order but sound alike.
    """
    cleaned = _clean(words, language)
    cleaned = _ANSWER_TAIL.sub("", cleaned).strip() or cleaned
    after = _ANSWER_PLACE.match(cleaned)
    if after and len(after.group(1).split()) <= 3:  # "i'm pretty sure it's well", "seven plus five is well"
        cleaned = after.group(1)
        core, in_answer_place = cleaned, True
    else:
        core = _ANSWER_LEAD.sub("", cleaned).strip()
        in_answer_place = core != cleaned or len(cleaned.split()) <= 2
    core = core or " ".join(cleaned.split()[-1:])
    tail = core.split()[-3:]
    if not tail or len(core.split()) > 4:
        return None
    best, best_score = None, 0.0
    for answer in question.answers:
        said = spoken_number(answer) if question.kind == "number" and parse_number(answer) is not None else answer
        target = " ".join(_lower_words(said).split())
        for size in range(1, len(tail) + 1):
            window = " ".join(tail[-size:])
            score = fuzz.ratio(window, target)
            key, target_key = _sound_key(window), _sound_key(target)
            if len(key) >= 2 and len(target_key) >= 2:
                score = max(score, fuzz.ratio(key, target_key) - 10)
            if score > best_score:
                best, best_score = said, score
    threshold = NEAR_MISS_IN_ANSWER_PLACE if in_answer_place and question.kind == "number" else NEAR_MISS
    return best if best_score >= threshold else None


_ANSWER_PLACE = re.compile(r".*\b(?:is|it s|its|be|was|equals|makes|got|say|said)\s+(\S.*)$")
"""Where an answer goes in a sentence: the words after the last "is", "it's", "be"…"""

_SOUNDS = [
    (r"[^a-z]", ""), (r"sh|tch", "X"), (r"ch", "K"), (r"ph", "f"), (r"ck|c(?=[^eiy])|c$|q|k", "K"), (r"c", "S"), (r"x", "KS"),
    (r"z", "S"), (r"v", "F"), (r"dg|j|g(?=[eiy])", "J"), (r"(?<=.)(?:gh|w|h|y)", ""), (r"d", "T"), (r"b", "P"),
    (r"(?<=.)[aeiou]", ""),
]


def _sound_key(text: str) -> str:
    """A rough English sound key of ``text`` (consonants by sound, vowels after the first letter dropped)."""
    key = text.lower()
    for pattern, replacement in _SOUNDS:
        key = re.sub(pattern, replacement, key)
    key = re.sub(r"[aeiou]", "A", key.upper())
    return re.sub(r"(.)\1+", r"\1", key)
