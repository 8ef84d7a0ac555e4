"""Extractive question answering (SQuAD 2.0 style): the label is a span of the context
or the literal ``unanswerable``.

``dataset.input_columns`` names the question column and the context columns the answer
is taken from (a passage; the options of a multiple-choice question). The question is the
column called ``question``, else the last one; the others, joined, are the context.
Templates see each column by its own name, and also as ``context`` and ``question``.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any, Mapping


from ..structured import object_schema
from . import TASKS
from ..spans import find_occurrences
from .base import Parsed, Task
from .classification import normalise

UNANSWERABLE = "unanswerable"
NOT_FOUND = "answer not found in {context}"
# Spans scored per row besides `unanswerable`: bounds the packed scoring pass on long contexts.
MAX_SPAN_CANDIDATES = 64
MAX_SPAN_WORDS = 6
# Whole sentences (best question overlap first) offered as candidates when this short.
MAX_SENTENCE_WORDS = 30
SENTENCE_CANDIDATES = 2

_NO_ANSWER = {UNANSWERABLE, "not answerable", "no answer", "none", "n/a", "cannot be answered", "cannot answer", "unknown"}
# "Answer:", "The answer is 1908", "The answer to this question is: 1908" (all seen from small models).
_PREFIX = re.compile(r"^\s*(?:the\s+)?(?:final\s+)?(?:answer|output|span)\b(?:[^:\n]{0,40}?:|\s+is\b:?)\s*", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
# Function words end a noun-phrase-sized chunk; they also carry no signal when matching a question.
_STOPWORDS = frozenset(
    "a an the and or but of to in on at by for with from as into about over after before between during "
    "is are was were be been being has have had do does did it its this that these those which who whom "
    "whose what when where why how than then there their they them he she his her we our you your i not "
    "no so such can could would should will may might also until since through under within without against "
    "among per via across behind beyond near upon while because although if whether each all any some".split()
)
_EDGE_PUNCTUATION = "\"'`“”‘’()[]{}<>,.;:!?"


def squad_normalise(text: str) -> str:
    """SQuAD's answer normalisation: lowercase, drop punctuation and articles, squash spaces."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def _answer_tokens(answer: str) -> list[str]:
    return [] if normalise(answer) == UNANSWERABLE else squad_normalise(answer).split()


def token_f1(predicted: str, gold: str) -> float:
    """SQuAD token F1; ``unanswerable`` counts as the empty answer (1.0 only against another).
    A missing prediction (a failed row) scores 0."""
    if not predicted.strip():
        return 0.0
    pred, ref = _answer_tokens(predicted), _answer_tokens(gold)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _chunks(sentence: str) -> list[str]:
    """Runs of up to MAX_SPAN_WORDS content words, split at function words and punctuation."""
    chunks, run = [], []

    def close() -> None:
        if run:
            chunks.append(" ".join(run))
            run.clear()

    for raw in sentence.split():
        word = raw.strip(_EDGE_PUNCTUATION)
        if not word or word.lower() in _STOPWORDS:
            close()
            continue
        if len(run) == MAX_SPAN_WORDS or raw[0] in "([{\"“‘'":
            close()
        run.append(word)
        if raw[-1] in ",.;:!?)]}\"”’'":
            close()
    close()
    return chunks


def _named_runs(chunk: str) -> list[str]:
    """Runs of capitalised words or numbers inside a chunk ("original Fresno Normal School"
    → "Fresno Normal School"; "3,600 Frenchmen famously" → "3,600 Frenchmen"): names and
    quantities are the commonest answers."""
    runs, run = [], []
    for word in chunk.split() + [""]:
        if word[:1].isupper() or word[:1].isdigit():
            run.append(word)
        elif run:
            runs.append(" ".join(run))
            run = []
    return [r for r in runs if r != chunk]


@TASKS.register("question_answering")
class QuestionAnsweringTask(Task):
    template = "question_answering.jinja"
    default_example_template = "Context: {{ context }}\nQuestion: {{ question }}\nAnswer: {{ label }}"
    candidates_vary_by_row = True
    # Calibration against content-free prompts would score this row's spans after a prompt
    # without its context: three more passes per row for a baseline that means little.
    default_label_scoring = "sum"

    @classmethod
    def check_config(cls, config) -> None:
        if len(config.dataset.input_columns) < 2:
            raise ValueError(
                "dataset.input_columns: question_answering needs the context (or options) and the question columns"
            )

    @property
    def question_column(self) -> str:
        named = [c for c in self.input_columns if c.casefold() == "question"]
        return named[0] if len(named) == 1 else self.input_columns[-1]

    @property
    def context_columns(self) -> list[str]:
        return [c for c in self.input_columns if c != self.question_column]

    @property
    def context_name(self) -> str:
        """How the prompt and errors call the context: its column names ("the passage", "the options")."""
        return " and ".join(c.replace("_", " ") for c in self.context_columns)

    def template_aliases(self, inputs: Mapping[str, str]) -> dict[str, str]:
        context = "\n".join(inputs[c] for c in self.context_columns)
        return {"context": context, "question": inputs[self.question_column]}

    def _context_and_question(self, row: Mapping[str, Any]) -> tuple[str, str]:
        aliases = self.template_aliases(self.render_inputs(row))
        return aliases["context"], aliases["question"]

    def prompt_variables(self) -> dict[str, Any]:
        return {**super().prompt_variables(), "unanswerable": UNANSWERABLE, "context_name": self.context_name}

    answer_key = "answer"

    def output_schema(self, labels: list[str] | None = None) -> dict[str, Any] | None:
        # Not constrained to spans of the context: the answer may be "unanswerable".
        return object_schema({"answer": {"type": "string"}})

    def candidates(self, row: Mapping[str, Any]) -> list[str] | None:
        """`unanswerable`, then up to MAX_SPAN_CANDIDATES spans: the short sentences sharing
        most words with the question, and the chunks of every sentence, best sentences first."""
        context, question = self._context_and_question(row)
        question_words = {w.strip(_EDGE_PUNCTUATION).lower() for w in question.split()} - _STOPWORDS
        sentences = [s for s in _SENTENCE_END.split(context.strip()) if s]

        def overlap(sentence: str) -> int:
            return len(question_words & {w.strip(_EDGE_PUNCTUATION).lower() for w in sentence.split()})

        ranked = sorted(sentences, key=overlap, reverse=True)  # stable: ties keep context order
        spans = [s.strip() for s in ranked if len(s.split()) <= MAX_SENTENCE_WORDS][:SENTENCE_CANDIDATES]
        for sentence in ranked:
            for chunk in _chunks(sentence):
                spans.extend([chunk, *_named_runs(chunk)])
        unique = list(dict.fromkeys(span for span in spans if normalise(span) != UNANSWERABLE))
        return [UNANSWERABLE, *unique[:MAX_SPAN_CANDIDATES]]

    def parse(self, text: str, row: Mapping[str, Any]) -> Parsed:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        answer = _PREFIX.sub("", lines[0] if lines else "").strip()
        answer = answer.strip("\"'`“”‘’*").strip()
        if not answer:
            return Parsed("", "empty answer")
        said = normalise(answer).rstrip(".!")
        if said == UNANSWERABLE:
            return Parsed(UNANSWERABLE)
        context, _ = self._context_and_question(row)
        # Models add a full stop or quotes the span does not have: try the answer as written, then trimmed.
        for attempt in dict.fromkeys((answer, answer.rstrip(".,;:!?"), answer.strip(_EDGE_PUNCTUATION))):
            spans = find_occurrences(context, attempt)
            if spans:
                start, end = spans[0]
                return Parsed(context[start:end], details={"answer_start": start})
        if said in _NO_ANSWER:  # "none" can be a span of the context too, so only after looking there
            return Parsed(UNANSWERABLE)
        return Parsed(answer, NOT_FOUND.format(context=self.context_name))

    def example_label(self, value: Any) -> str:
        text = "" if value is None else str(value)
        return UNANSWERABLE if normalise(text) in _NO_ANSWER else text

    def is_correct(self, predicted: str, gold: str) -> bool:
        return bool(predicted.strip()) and _answer_tokens(predicted) == _answer_tokens(gold)

    def metrics(self, predicted: list[str], gold: list[str]) -> dict[str, float]:
        from sklearn.metrics import accuracy_score

        count = max(len(gold), 1)
        return {
            "exact_match": sum(map(self.is_correct, predicted, gold)) / count,
            "f1": sum(map(token_f1, predicted, gold)) / count,
            "answerable_accuracy": float(accuracy_score(list(map(_answerability, gold)), list(map(_answerability, predicted)))),
        }


def _answerability(answer: str) -> str:
    if not answer.strip():
        return "no label"  # a failed row is wrong whatever the gold answer
    return "answerable" if _answer_tokens(answer) else UNANSWERABLE
