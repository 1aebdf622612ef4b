"""Which columns look personal: by their name (English and French) and by a small sample of their content.

Names are split into words (snake_case, camelCase, accents and case removed) and matched against categories
of personal data, each allowed only on the column types that can hold it (``email_count integer`` is not an
e-mail). Content is classified on the source, in SQL, on a few hundred sampled values per column (inside
text, json/jsonb values and arrays): only counts come back, never a value, so raw personal data does not
leave production even while it is being looked for. Card numbers pass a Luhn check, IBANs and French
social security numbers their mod-97 key, so that a random number is not taken for one.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

from tether.sync.catalog import Column, Relation

# Rows sampled per table (all of a smaller one): a sync's safety net looks at fewer than --check-rules, which CI
# runs on every migration, so that whatever passes the check passes the sync.
SAMPLE_ROWS = 20
THOROUGH_SAMPLE_ROWS = 200
BIG_TABLE_ROWS = 50_000  # above this, rows come from random pages (TABLESAMPLE SYSTEM), not the oldest ones
VALUES_PER_ROW = 10  # at most this many strings read from one json document or array
TABLES_PER_QUERY = 50

# ---------------------------------------------------------------------------------------------------------------
# Names


@dataclass(frozen=True)
class Category:
    key: str
    label: str  # "an e-mail address": reads after "named like"
    suggestion: str  # the rule to suggest
    tokens: frozenset[str]  # words that say it on their own
    families: frozenset[str]  # the type families it can be stored in
    substrings: tuple[str, ...] = ()  # long words found inside glued names (dateofbirth, motdepasse)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


TEXT, JSON, NUMBER, DATE, NETWORK, BINARY, UUID, BOOLEAN, GEO, ENUM = (
    "text", "json", "number", "date", "network", "binary", "uuid", "boolean", "geo", "enum")
ANY_FAMILY = frozenset({TEXT, JSON, NUMBER, DATE, NETWORK, BINARY, UUID, BOOLEAN, GEO, ENUM, "other"})

CATEGORIES: tuple[Category, ...] = (
    Category("email", "an e-mail address", "fake_email",
             _words("email emails mail mails courriel courriels mel adresse_mail"), frozenset({TEXT, JSON}),
             ("email", "courriel")),
    Category("phone", "a phone number", "fake_phone",
             _words("phone phones telephone telephones tel tels mobile mobiles portable cell cellphone gsm fax "
                    "msisdn smsnumber"), frozenset({TEXT, JSON, NUMBER}), ("phone", "telephone")),
    Category("person_name", "a person's name", "fake_name",
             _words("firstname firstnames lastname lastnames fullname surname surnames forename forenames "
                    "givenname familyname middlename maidenname prenom prenoms patronyme nomdefamille "
                    "nomdenaissance nomdusage displayname"),
             frozenset({TEXT, JSON}), ("firstname", "lastname", "fullname", "surname", "prenom", "patronyme")),
    Category("username", "a user name or login", "hash",
             _words("username usernames login logins pseudo pseudonyme nickname handle screenname"),
             frozenset({TEXT, JSON}), ("username", "nickname")),
    Category("address", "a postal address", "fake_address",
             _words("address addresses adresse adresses addr street streets rue avenue voie city cities ville "
                    "villes commune town zip zipcode postcode postal postalcode codepostal cedex lieudit "
                    "batiment etage appartement apartment residence domicile"),
             frozenset({TEXT, JSON, NUMBER}), ("address", "adresse", "postcode", "zipcode", "codepostal")),
    Category("ip", "an IP or network address", "{inet: {keep_prefix: 16}}",
             _words("ip ips ipv ipaddr ipaddress remoteaddr clientip macaddr macaddress"),
             frozenset({TEXT, JSON, NETWORK, NUMBER}), ("ipaddress", "macaddress")),
    Category("birth", "a birth date or age", "{generalize: year}",
             _words("birth birthday birthdate birthdates dob naissance anniversaire ddn age"),
             frozenset({TEXT, JSON, NUMBER, DATE}), ("birth", "naissance")),
    Category("secret", "a secret, password or token", "hash",
             _words("password passwords passwd pwd mdp motdepasse secret secrets token tokens apikey salt otp "
                    "totp mfa jwt bearer credential credentials privatekey secretkey accesskey signingkey "
                    "recoverycode"),
             ANY_FAMILY - {BOOLEAN, DATE, NUMBER, ENUM},
             ("password", "passwd", "motdepasse", "secret", "token", "apikey", "privatekey")),
    Category("bank", "bank or card details", "fake_iban",
             _words("iban ibans bic swift rib card cards carte cb pan cvv cvc ccnum creditcard bankaccount "
                    "accountnumber numerocompte"),
             frozenset({TEXT, JSON, NUMBER}), ("iban", "creditcard", "bankaccount")),
    Category("national_id", "an official identity number", "hash",
             _words("ssn nir insee secu securitesociale numerosecu passport passeport cni idcard nationalid "
                    "taxid fiscal numerofiscal permis drivinglicense driverlicense licencenumber siret siren "
                    "tva vatnumber"),
             frozenset({TEXT, JSON, NUMBER}), ("securitesociale", "passport", "passeport", "nationalid")),
    Category("geolocation", "a geographic position", "null",
             _words("latitude longitude lat lng lon geo geolocation gps coordinates coords location localisation "
                    "geom geometry geog geography"),
             frozenset({TEXT, JSON, NUMBER, GEO, "other"}), ("latitude", "longitude", "geolocation")),
    Category("photo", "a photo or likeness", "null",
             _words("photo photos avatar avatars picture pictures selfie portrait face fingerprint biometric"),
             frozenset({TEXT, BINARY, JSON}), ("avatar", "picture", "fingerprint")),
    Category("health", "health or other sensitive data", "null",
             _words("health sante medical medicale medicaux diagnosis diagnostic allergy allergies allergie "
                    "disability handicap religion ethnicity ethnic sexual sexuality political politique "
                    "syndicat syndical pregnancy grossesse bloodtype treatment prescription ordonnance"),
             ANY_FAMILY, ("diagnos", "allerg", "pregnan", "handicap")),
    Category("about", "a person's own words about themselves", "{fixed: ''}",
             _words("bio biography biographie aboutme presentation"), frozenset({TEXT, JSON})),
    Category("income", "income or salary", "{noise: {relative: 0.2}}",
             _words("salary salaries salaire salaires income revenu revenus wage wages remuneration"),
             frozenset({NUMBER, TEXT, JSON})),
    Category("vehicle", "a vehicle registration", "hash",
             _words("plate licenseplate immatriculation plaque vin"), frozenset({TEXT, JSON})),
)

# A name or its French twin `nom` says "person" only next to a qualifier or in a table of people.
NAME_WORDS = frozenset({"name", "names", "nom", "noms"})
NAME_QUALIFIERS = frozenset({"first", "last", "full", "given", "family", "middle", "maiden", "display", "nick",
                             "sur", "fore", "birth", "naissance", "usage", "famille", "jeune", "fille", "legal",
                             "real", "complet"})
PERSON_NOUNS = _words("""
    user users utilisateur utilisateurs person persons people personne personnes profile profiles profil profils
    customer customers client clients member members membre membres contact contacts employee employees employe
    employes salarie salaries staff patient patients student students etudiant etudiants eleve eleves account
    accounts adherent adherents author authors auteur auteurs owner owners proprietaire proprietaires recipient
    recipients destinataire destinataires sender senders expediteur expediteurs guest guests visitor visitors
    visiteur visiteurs applicant applicants candidat candidats candidate candidates lead leads prospect prospects
    subscriber subscribers abonne abonnes driver drivers conducteur conducteurs passenger passengers passager
    passagers tenant tenants locataire locataires holder holders titulaire titulaires beneficiary beneficiaries
    beneficiaire beneficiaires signatory signataire signataires teacher teachers enseignant enseignants doctor
    doctors medecin medecins volunteer volunteers benevole benevoles participant participants attendee attendees
    player players joueur joueurs buyer buyers acheteur acheteurs seller sellers vendeur vendeurs contributor
    contributors reviewer reviewers father mother pere mere spouse conjoint child children enfant enfants
    parent parents emergency referent referents manager managers agent agents interlocuteur
""")
# Words that make a name about something else: a count, a flag, a format, a setting.
EXCLUDING_WORDS = _words("""
    count counts nb total verified verifie validated valide confirmed confirme enabled disabled active actif
    type kind format template provider status statut opt optin optout consent consentement allowed required
    visible visibility policy length len size max min version config settings setting label prefix indicatif
    domain regex pattern platform app application os browser
""")
KEY_WORDS = frozenset({"id", "ids", "uuid", "key", "fk", "ref"})


@functools.lru_cache(maxsize=4096)
def _words_of(name: str) -> tuple[str, ...]:
    return tuple(name_words(name))


def name_words(name: str) -> list[str]:
    """``dateDeNaissance`` → [date, de, naissance]; ``E-mail_2`` → [e, mail, 2]; accents and case dropped."""
    text = unicodedata.normalize("NFKD", name)
    text = "".join(char for char in text if not unicodedata.combining(char))
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", text)
    text = re.sub(r"([A-Za-z])([0-9])|([0-9])([A-Za-z])", lambda m: " ".join(g for g in m.groups() if g), text)
    return [word for word in re.split(r"[^a-z0-9]+", text.lower()) if word]


def _glued_forms(words: Sequence[str]) -> set[str]:
    """Every run of adjacent words glued together: [date, of, birth] → dateof, ofbirth, dateofbirth, ..."""
    forms = set(words)
    for start in range(len(words)):
        for end in range(start + 2, len(words) + 1):
            forms.add("".join(words[start:end]))
    return forms


def type_family(column: Column) -> str:
    """The broad kind of value a column holds (arrays count as their elements)."""
    name = column.type_name[1:] if column.category == "A" and column.type_name.startswith("_") else column.type_name
    category = column.category
    if category == "A":
        category = _ELEMENT_CATEGORIES.get(name, "S" if name in _TEXT_NAMES else "U")
    if name in ("json", "jsonb"):
        return JSON
    if name in ("macaddr", "macaddr8"):
        return NETWORK
    if name == "bytea":
        return BINARY
    if name == "uuid":
        return UUID
    return {"S": TEXT, "N": NUMBER, "D": DATE, "I": NETWORK, "B": BOOLEAN, "G": GEO, "E": ENUM,
            "C": TEXT}.get(category, "other")


_TEXT_NAMES = frozenset({"text", "varchar", "bpchar", "citext", "name"})
_ELEMENT_CATEGORIES = {"int2": "N", "int4": "N", "int8": "N", "numeric": "N", "float4": "N", "float8": "N",
                       "date": "D", "timestamp": "D", "timestamptz": "D", "inet": "I", "cidr": "I", "bool": "B",
                       "json": "U", "jsonb": "U"}


def is_person_table(relation: Relation) -> bool:
    return any(word in PERSON_NOUNS for word in _words_of(relation.name))


def name_reasons(relation: Relation, column: Column) -> list[tuple[Category, str]]:
    """The categories of personal data that ``column``'s name (and type) points to, each with the word seen."""
    return list(_name_reasons(column.name, type_family(column), is_person_table(relation)))


@functools.lru_cache(maxsize=8192)
def _name_reasons(name: str, family: str, person_table: bool) -> tuple[tuple[Category, str], ...]:
    words = list(_words_of(name))
    if family == BOOLEAN:
        # A yes/no says nothing about a person, except for sensitive categories (health, beliefs).
        allowed: tuple[Category, ...] = tuple(c for c in CATEGORIES if c.key == "health")
    else:
        allowed = CATEGORIES
    excluded = any(word in EXCLUDING_WORDS for word in words) or (
        family in (NUMBER, UUID) and any(word in KEY_WORDS for word in words))
    forms = _glued_forms(words)
    glued = "".join(words)
    found: list[tuple[Category, str]] = []
    for category in allowed:
        if family not in category.families or (excluded and category.key != "health"):
            continue
        hit = next((form for form in sorted(forms) if form in category.tokens), None)
        if hit is None:
            hit = next((part for part in category.substrings if part in glued), None)
        if hit is not None:
            found.append((category, hit))
    if not excluded and family in (TEXT, JSON) and not any(c.key in ("person_name", "username") for c, _ in found):
        named = next((word for word in words if word in NAME_WORDS), None)
        if named is not None:
            person = next((word for word in words if word in NAME_QUALIFIERS | PERSON_NOUNS), None)
            if person is not None or person_table:
                found.append((_CATEGORY["person_name"], " ".join(filter(None, (person, named)))))
    return tuple(found)


_CATEGORY = {category.key: category for category in CATEGORIES}

# ---------------------------------------------------------------------------------------------------------------
# Content


@dataclass(frozen=True)
class Detector:
    key: str
    label: str  # "e-mail addresses"
    category: str  # the name category it matches, for the suggestion
    min_contained: int  # matches inside longer text needed to flag a column (whole values: 1)


DETECTORS: tuple[Detector, ...] = (
    Detector("email", "e-mail addresses", "email", 1),
    Detector("phone", "phone numbers", "phone", 2),
    Detector("ip", "IP addresses", "ip", 2),
    Detector("card", "payment card numbers (Luhn check passed)", "bank", 1),
    Detector("iban", "IBANs (checksum passed)", "bank", 1),
    Detector("nir", "French social security numbers (key checked)", "national_id", 1),
)

_EMAIL = r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
_PHONE_FR = r"(\+33|0033|\(\+33\))[ .-]?(\(0\)[ .-]?)?[1-9]([ .-]?[0-9]{2}){4}|0[1-9]([ .-]?[0-9]{2}){4}"
_PHONE_INTL = r"\+[1-9][0-9]{0,2}[ .-]?(\(?[0-9]{1,4}\)?[ .-]?){1,5}[0-9]{2,4}"
_PHONE_NANP = r"\(?[2-9][0-9]{2}\)?[ .-]?[0-9]{3}[ .-]?[0-9]{4}"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(\.{_OCTET}){{3}}"
_IPV6 = r"([0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}"
_CARD = r"[2-6][0-9]{3}([ -]?[0-9]{4}){2}[ -]?[0-9]{1,7}"
_CARD_IN_TEXT = r"[2-6][0-9]{3}(?:[ -]?[0-9]{4}){3}"
# Free text: a match must stand on its own, not inside a longer word of letters and digits (hex digests).
_BEFORE, _AFTER = r"(^|[^0-9A-Za-z+])", r"($|[^0-9A-Za-z])"
# IBAN lengths by country (the SWIFT registry's common ones): a random code rarely has a country and its length.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}
_IBAN_COUNTRIES = "|".join(sorted(IBAN_LENGTHS))
_IBAN = rf"({_IBAN_COUNTRIES})[0-9]{{2}}[A-Z0-9]{{11,30}}"
_IBAN_IN_TEXT = rf"(?:{_IBAN_COUNTRIES})[0-9]{{2}}(?: ?[A-Z0-9]{{4}}){{2,7}}(?: ?[A-Z0-9]{{1,4}})?"
_NIR = r"[12][0-9]{2}(0[1-9]|1[0-2]|[2-9][0-9])(2A|2B|[0-9]{2})[0-9]{6}[0-9]{2}"


def _iban_length_ok(compact: sql.Composable) -> sql.Composable:
    """SQL: the IBAN ``compact`` has its country's length."""
    lengths = sql.SQL(", ").join(sql.SQL("({}, {})").format(sql.Literal(code), sql.Literal(length))
                                 for code, length in sorted(IBAN_LENGTHS.items()))
    return sql.SQL("(length({c}) = (SELECT n FROM (VALUES {lengths}) AS iban_lengths(code, n) "
                   "WHERE code = left({c}, 2)))").format(c=compact, lengths=lengths)


def _luhn(digits: sql.Composable) -> sql.Composable:
    """SQL: the Luhn check of the digit string ``digits`` (and not one digit repeated, which passes it)."""
    return sql.SQL(
        "({d} !~ '^([0-9])\\1*$' AND (SELECT sum(CASE WHEN i % 2 = 0 THEN 2 * n - CASE WHEN n >= 5 THEN 9 ELSE 0 END "
        "ELSE n END) % 10 = 0 FROM (SELECT i, substr(reverse({d}), i, 1)::int AS n "
        "FROM generate_series(1, length({d})) AS i) AS luhn))").format(d=digits)


def _iban_valid(compact: sql.Composable) -> sql.Composable:
    """SQL: the mod-97 check of the IBAN ``compact`` (upper case, no spaces)."""
    moved = sql.SQL("(substr({c}, 5) || substr({c}, 1, 4))").format(c=compact)
    return sql.SQL(
        "((SELECT string_agg(CASE WHEN ch BETWEEN 'A' AND 'Z' THEN (ascii(ch) - 55)::text ELSE ch END, '' ORDER BY i) "
        "FROM (SELECT i, substr({m}, i, 1) AS ch FROM generate_series(1, length({m})) AS i) AS iban)::numeric % 97 "
        "= 1)").format(m=moved)


def _nir_valid(compact: sql.Composable) -> sql.Composable:
    """SQL: the key of a French NIR (``compact``: 15 characters; Corsica's 2A/2B count as 19/18)."""
    return sql.SQL("(97 - replace(replace(left({c}, 13), '2A', '19'), '2B', '18')::numeric % 97 "
                   "= right({c}, 2)::int)").format(c=compact)


def _matches(value: str, pattern: str, flags: str = "") -> sql.Composable:
    return sql.SQL("{} ~{} {}").format(sql.Identifier(value), sql.SQL(flags), sql.Literal(pattern))


def _when(cheap: str, expensive: sql.Composable) -> sql.Composable:
    """``expensive`` only where the cheap test holds (a CASE: SQL does not promise to short-circuit AND)."""
    return sql.SQL("CASE WHEN {} THEN {} ELSE false END").format(sql.SQL(cheap), expensive)


def detector_sql() -> dict[str, tuple[sql.Composable, sql.Composable]]:
    """Per detector, SQL for (the whole value is one, the value contains one).

    The expressions read ``v`` (the trimmed value), ``compact`` (upper case, no white space), ``digits`` (its
    digits) and ``ndigits``, which :func:`_classify_query` computes once per value. Each regular expression
    runs only on values a cheap test lets through (an @, enough digits): a sample of labels and digests costs
    little.
    """
    compact, digits = sql.Identifier("compact"), sql.Identifier("digits")
    # substring(... from pattern) returns the first parenthesized group: the patterns' other groups are (?:...).
    iban_found = sql.SQL("replace(substring(upper(v) from {}), ' ', '')").format(
        sql.Literal(f"{_BEFORE.replace('(', '(?:', 1)}({_IBAN_IN_TEXT}){_AFTER.replace('(', '(?:', 1)}"))
    card_found = sql.SQL("regexp_replace(substring(v from {}), '[^0-9]', '', 'g')").format(
        sql.Literal(f"{_BEFORE.replace('(', '(?:', 1)}({_CARD_IN_TEXT}){_AFTER.replace('(', '(?:', 1)}"))
    return {
        "email": (_when("strpos(v, '@') > 0", _matches("v", f"^{_EMAIL}$")),
                  _when("strpos(v, '@') > 0", _matches("v", _EMAIL))),
        "phone": (_when("ndigits BETWEEN 8 AND 15 AND length(v) <= 30", sql.SQL("({} OR {} OR {})").format(
                      _matches("v", f"^({_PHONE_FR})$"), _matches("v", f"^({_PHONE_INTL})$"),
                      _matches("v", f"^{_PHONE_NANP}$"))),
                  _when("ndigits >= 8", sql.SQL("({} OR {})").format(
                      _matches("v", f"{_BEFORE}({_PHONE_FR}){_AFTER}"),
                      _matches("v", rf"(^|[^0-9A-Za-z])\+[1-9][0-9 .()-]{{7,18}}[0-9]{_AFTER}")))),
        "ip": (_when("ndigits >= 4 AND length(v) <= 45 OR strpos(v, '::') > 0", sql.SQL(
                   "({} OR ({} AND ({} OR {} OR {})))").format(
                   _matches("v", f"^{_IPV4}$"), _matches("v", f"^{_IPV6}$"), _matches("v", "::"),
                   _matches("v", "[a-f]", "*"), _matches("v", "(:.*){7}"))),
               _when("ndigits >= 4 AND strpos(v, '.') > 0",
                     _matches("v", f"(^|[^0-9A-Za-z.]){_IPV4}($|[^0-9A-Za-z.])"))),
        "card": (_when("ndigits BETWEEN 13 AND 19 AND length(v) <= 25", sql.SQL("({} AND {})").format(
                     _matches("v", f"^{_CARD}$"), _luhn(digits))),
                 _when("ndigits >= 13", sql.SQL("({} AND {})").format(
                     _matches("v", f"{_BEFORE}{_CARD_IN_TEXT}{_AFTER}"), _luhn(card_found)))),
        "iban": (_when("ndigits >= 8 AND length(compact) BETWEEN 15 AND 34", sql.SQL("({} AND {} AND {})").format(
                     _matches("compact", f"^{_IBAN}$"), _iban_length_ok(compact), _iban_valid(compact))),
                 _when("ndigits >= 8 AND length(v) >= 15", sql.SQL("(upper(v) ~ {} AND {} AND {})").format(
                     sql.Literal(f"{_BEFORE}{_IBAN_IN_TEXT}{_AFTER}"), _iban_length_ok(iban_found),
                     _iban_valid(iban_found)))),
        "nir": (_when("ndigits >= 13 AND length(compact) = 15", sql.SQL("({} AND {})").format(
                    _matches("compact", f"^{_NIR}$"), _nir_valid(compact))),
                sql.SQL("false")),
    }


def sampled_values(column: Column) -> sql.Composable | None:
    """SQL for the array of texts to classify in one row of ``column`` (None: a type that holds no such text)."""
    ident = sql.Identifier(column.name)
    element = column.type_name[1:] if column.category == "A" and column.type_name.startswith("_") else None
    family = type_family(column)
    limit = sql.Literal(VALUES_PER_ROW)
    json_values = ("ARRAY(SELECT item #>> '{{}}' FROM jsonb_path_query({}, "
                   "'strict $.** ? (@.type() == \"string\" || @.type() == \"number\")') AS item LIMIT {})")
    if element is None:
        if family == JSON:
            return sql.SQL(json_values).format(sql.SQL("{}::jsonb").format(ident), limit)
        if family == TEXT:
            # COLLATE "C": the detectors use regular expressions, which a nondeterministic collation refuses.
            return sql.SQL('ARRAY[{}::text COLLATE "C"]').format(ident)
        return None
    if family == JSON:
        return sql.SQL(json_values).format(sql.SQL("to_jsonb({})").format(ident), limit)
    if family == TEXT:
        return sql.SQL('({}::text[] COLLATE "C")[1:{}]').format(ident, limit)
    return None


@dataclass(frozen=True)
class ContentCounts:
    """What the sample of one column held: how many values, and per detector how many were or contained one."""

    values: int
    whole: dict[str, int]
    contained: dict[str, int]

    def reasons(self) -> list[tuple[Detector, str]]:
        found = []
        for detector in DETECTORS:
            whole, inside = self.whole.get(detector.key, 0), self.contained.get(detector.key, 0)
            if whole:
                found.append((detector, f"{whole} of {self.values} sampled values are {detector.label}"))
            elif inside >= detector.min_contained:
                found.append((detector, f"{inside} of {self.values} sampled values contain {detector.label}"))
        return found


# A value is looked at closely only if it could be one of the above: an @, a run of eight digits with the
# separators phones, cards and IBANs use, or the dots and colons of an IP address. Most values (words, labels,
# hex digests) fail this one test, which keeps a sample of a few hundred tables within a second or two. Hex
# tokens (digests, uuids) are never personal by their content and are left out too.
CANDIDATE = r"@|[0-9]([ .()/+-]{0,2}[0-9]){7}|[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]|::|[0-9A-Fa-f]:[0-9A-Fa-f]{1,4}:"


def _sample_query(relation: Relation, columns: Sequence[Column], sample: sql.Composable,
                  rows: int = SAMPLE_ROWS) -> sql.Composed:
    """One table's sampled values: rows (table oid, column name, text value)."""
    values = sql.SQL(", ").join(
        sql.SQL("({}, {})").format(sql.Literal(column.name), sampled_values(column)) for column in columns)
    selected = sql.SQL(", ").join(sql.Identifier(column.name) for column in columns)
    return sql.SQL(
        "(SELECT {oid}::oid AS table_oid, x.name, raw FROM (SELECT {selected} FROM ONLY {table}{sample} LIMIT {rows}) "
        "AS s CROSS JOIN LATERAL (VALUES {values}) AS x(name, vals) CROSS JOIN LATERAL unnest(x.vals) AS raw)").format(
        oid=sql.Literal(relation.oid), selected=selected, table=relation.identifier, sample=sample,
        rows=sql.Literal(rows), values=values)


def _classify_query(samples: Sequence[sql.Composable]) -> sql.Composed:
    """Several tables' samples, classified: a row per column with its value count and each detector's counts.

    The detectors appear once, over the union of the samples: planning them once per table cost more than
    running them.
    """
    checks = detector_sql()
    counts: list[sql.Composable] = [sql.SQL("count(*)")]
    for detector in DETECTORS:
        whole, inside = checks[detector.key]
        counts.append(sql.SQL("count(*) FILTER (WHERE candidate AND {})").format(whole))
        counts.append(sql.SQL("count(*) FILTER (WHERE candidate AND NOT ({}) AND {})").format(whole, inside))
    # Each OFFSET 0 keeps a subquery from being flattened, which would compute its columns again at every use.
    return sql.SQL(
        "SELECT table_oid, name, {counts} "
        "FROM (SELECT table_oid, name, v, v ~ {candidate} AND NOT (v ~ '[a-fA-F]' AND v ~ '^[0-9a-fA-F -]+$') "
        "AS candidate FROM (SELECT table_oid, name, "
        "btrim(raw COLLATE \"C\", E' \\t\\r\\n') AS v FROM ({samples}) AS sampled WHERE raw IS NOT NULL AND raw <> '' "
        "AND length(raw) < 10000 OFFSET 0) AS trimmed OFFSET 0) AS t "
        "CROSS JOIN LATERAL (SELECT compact, digits, length(digits) AS ndigits FROM (SELECT "
        "CASE WHEN candidate THEN upper(regexp_replace(v, '\\s', '', 'g')) END AS compact, "
        "CASE WHEN candidate THEN regexp_replace(v, '[^0-9]', '', 'g') END AS digits OFFSET 0) AS forms "
        "OFFSET 0) AS n "
        "GROUP BY table_oid, name").format(
        counts=sql.SQL(", ").join(counts), candidate=sql.Literal(CANDIDATE),
        samples=sql.SQL(" UNION ALL ").join(samples))


def sample_clause(estimated_rows: float, rows: int = SAMPLE_ROWS) -> sql.Composable:
    """TABLESAMPLE for big tables (a few random pages instead of the oldest rows); nothing for small ones."""
    if estimated_rows <= BIG_TABLE_ROWS:  # the first pages are cheap; few pages sample unreliably
        return sql.SQL("")
    percent = max(0.01, min(100.0, 100.0 * max(rows * 10, 1000) / estimated_rows))
    return sql.SQL(" TABLESAMPLE SYSTEM ({})").format(sql.Literal(round(percent, 4)))


def sample_content(conn: psycopg.Connection, targets: Iterable[tuple[Relation, Sequence[Column]]],
                   estimated_rows: dict[int, float], rows: int = SAMPLE_ROWS) -> dict[tuple[int, str], ContentCounts]:
    """Classify a sample of ``rows`` rows of each (table, columns) on the source; (table oid, column) → counts."""
    parts = [_sample_query(relation, columns, sample_clause(estimated_rows.get(relation.oid, 0.0), rows), rows)
             for relation, columns in targets if columns]
    found: dict[tuple[int, str], ContentCounts] = {}
    # The queries travel together (one round trip, not one each: production may be far away).
    with jit_off(conn), conn.pipeline():
        cursors = [conn.execute(_classify_query(parts[start:start + TABLES_PER_QUERY]))
                   for start in range(0, len(parts), TABLES_PER_QUERY)]
        rows_found = [row for cursor in cursors for row in cursor.fetchall()]
    for oid, name, values, *numbers in rows_found:
        whole = {detector.key: int(numbers[2 * index]) for index, detector in enumerate(DETECTORS)}
        inside = {detector.key: int(numbers[2 * index + 1]) for index, detector in enumerate(DETECTORS)}
        found[(int(oid), str(name))] = ContentCounts(int(values), whole, inside)
    return found


@contextmanager
def jit_off(conn: psycopg.Connection) -> Iterator[None]:
    """JIT off for a few queries in the open transaction, then as it was.

    The checksum subqueries make the planner's cost estimate huge, so a server with JIT on would spend
    about 90 ms compiling each query that then runs in a few milliseconds.
    """
    local = conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    # One round trip: the subquery's row (the setting as it was) is made before the outer set_config runs.
    row = conn.execute("SELECT previous, set_config('jit', 'off', %s) "
                       "FROM (SELECT current_setting('jit') AS previous OFFSET 0) AS setting", (local,)).fetchone()
    previous = str(row[0]) if row else "on"
    try:
        yield
    finally:
        if not conn.closed and conn.info.transaction_status in (psycopg.pq.TransactionStatus.INTRANS,
                                                                   psycopg.pq.TransactionStatus.IDLE):
            conn.execute("SELECT set_config('jit', %s, %s)", (previous, local))


def estimated_rows(conn: psycopg.Connection, oids: Sequence[int]) -> dict[int, float]:
    """The planner's row estimate per table (pg_class.reltuples; -1 when never analyzed)."""
    rows = conn.execute("SELECT oid, reltuples FROM pg_class WHERE oid = ANY(%s)", (list(oids),))
    return {int(oid): float(tuples) for oid, tuples in rows}


def sampled_columns(relation: Relation) -> list[Column]:
    return [column for column in relation.copied_columns if sampled_values(column) is not None]
