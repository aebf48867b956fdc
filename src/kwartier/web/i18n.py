"""The portal's texts in Dutch, English and French, the language choice, and Babel number and date formats."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from babel.dates import format_date
from babel.numbers import format_currency, format_decimal

LANGS = ("nl", "en", "fr")
DEFAULT_LANG = "en"
LANG_COOKIE = "kw_lang"
LOCALES = {"nl": "nl_NL", "en": "en_GB", "fr": "fr_FR"}

TEXT: dict[str, dict[str, str]] = {
    "app": {"nl": "kwartier", "en": "kwartier", "fr": "kwartier"},
    "login": {"nl": "Inloggen", "en": "Log in", "fr": "Connexion"},
    "logout": {"nl": "Uitloggen", "en": "Log out", "fr": "Déconnexion"},
    "username": {"nl": "Gebruikersnaam", "en": "Username", "fr": "Nom d'utilisateur"},
    "password": {"nl": "Wachtwoord", "en": "Password", "fr": "Mot de passe"},
    "bad_login": {"nl": "Onbekende gebruiker of verkeerd wachtwoord.", "en": "Unknown user or wrong password.",
                  "fr": "Utilisateur inconnu ou mot de passe erroné."},
    "bad_csrf": {"nl": "Het formulier is verlopen; probeer het opnieuw.", "en": "The form expired; please try again.",
                 "fr": "Le formulaire a expiré ; veuillez réessayer."},
    "too_many": {"nl": "Te veel mislukte pogingen; probeer het over {n} seconden opnieuw.",
                 "en": "Too many failed attempts; try again in {n} seconds.",
                 "fr": "Trop de tentatives échouées ; réessayez dans {n} secondes."},
    "insight": {"nl": "Inzicht", "en": "Insight", "fr": "Aperçu"},
    "invoices": {"nl": "Facturen", "en": "Invoices", "fr": "Factures"},
    "operator": {"nl": "Beheer", "en": "Operations", "fr": "Exploitation"},
    "grid": {"nl": "Netbelasting", "en": "Grid load", "fr": "Charge du réseau"},
    "prices_title": {"nl": "Prijzen per kwartier, vandaag en morgen",
                     "en": "Prices per quarter-hour, today and tomorrow",
                     "fr": "Prix par quart d'heure, aujourd'hui et demain"},
    "fixed": {"nl": "definitief", "en": "final", "fr": "définitif"},
    "forecast": {"nl": "voorspelling", "en": "forecast", "fr": "prévision"},
    "click_quarter": {"nl": "Klik op een kwartier voor de uitleg van de prijs.",
                      "en": "Click a quarter-hour to see how its price is made up.",
                      "fr": "Cliquez sur un quart d'heure pour l'explication de son prix."},
    "no_prices": {"nl": "Nog geen prijzen bekend.", "en": "No prices known yet.",
                  "fr": "Aucun prix connu pour l'instant."},
    "use_title": {"nl": "Verbruik en teruglevering, laatste 7 dagen", "en": "Use and feed-in, last 7 days",
                  "fr": "Consommation et injection, 7 derniers jours"},
    "import": {"nl": "Afname (kWh)", "en": "Taken (kWh)", "fr": "Prélevé (kWh)"},
    "export": {"nl": "Teruglevering (kWh)", "en": "Fed in (kWh)", "fr": "Injecté (kWh)"},
    "no_readings": {"nl": "Geen meetwaarden in de laatste 7 dagen.", "en": "No readings in the last 7 days.",
                    "fr": "Aucune mesure ces 7 derniers jours."},
    "costs_title": {"nl": "Kosten per onderdeel, {period}", "en": "Costs per component, {period}",
                    "fr": "Coûts par composante, {period}"},
    "component": {"nl": "Onderdeel", "en": "Component", "fr": "Composante"},
    "amount": {"nl": "Bedrag", "en": "Amount", "fr": "Montant"},
    "total": {"nl": "Totaal (incl. btw)", "en": "Total (incl. VAT)", "fr": "Total (TTC)"},
    "vat_line": {"nl": "Btw", "en": "VAT", "fr": "TVA"},
    "community": {"nl": "Gemeenschap", "en": "Community", "fr": "Communauté"},
    "rules_in_force": {"nl": "De regels die nu gelden", "en": "The rules in force", "fr": "Les règles en vigueur"},
    "rules_version": {"nl": "Versie, sinds", "en": "Version, since", "fr": "Version, depuis"},
    "sharing_rule": {"nl": "Delen van lokale opwek", "en": "Sharing local production",
                     "fr": "Partage de la production locale"},
    "price_rule": {"nl": "Prijs van gedeelde kWh", "en": "Price of shared kWh", "fr": "Prix du kWh partagé"},
    "voting": {"nl": "Stemmen", "en": "Voting", "fr": "Vote"},
    "voting_terms": {"nl": "quorum {quorum}, meerderheid boven {majority}",
                     "en": "quorum {quorum}, majority above {majority}",
                     "fr": "quorum {quorum}, majorité au-delà de {majority}"},
    "rule_static": {"nl": "vaste verdeelsleutels", "en": "static keys", "fr": "clés statiques"},
    "rule_prorata": {"nl": "naar verhouding van verbruik", "en": "in proportion to consumption",
                     "fr": "au prorata de la consommation"},
    "rule_priority": {"nl": "voorrangsgroepen", "en": "priority groups", "fr": "groupes de priorité"},
    "rule_dynamic": {"nl": "sleutels per kwartier", "en": "keys per quarter-hour", "fr": "clés par quart d'heure"},
    "rule_mid_market": {"nl": "midden tussen teruglever- en leveringsprijs",
                        "en": "halfway between feed-in and supply price",
                        "fr": "à mi-chemin entre prix d'injection et de fourniture"},
    "rule_uniform": {"nl": "één gemeenschapsprijs", "en": "one community price", "fr": "un prix communautaire unique"},
    "rule_solidarity": {"nl": "solidariteit: korting voor leden met energiearmoede",
                        "en": "solidarity: a reduced price for energy-poor members",
                        "fr": "solidarité : prix réduit pour les membres en précarité énergétique"},
    "sharing_title": {"nl": "Gedeelde energie, {period}", "en": "Shared energy, {period}",
                      "fr": "Énergie partagée, {period}"},
    "production_kwh": {"nl": "Opwek (kWh)", "en": "Production (kWh)", "fr": "Production (kWh)"},
    "consumption_kwh": {"nl": "Verbruik (kWh)", "en": "Consumption (kWh)", "fr": "Consommation (kWh)"},
    "shared_kwh": {"nl": "Gedeeld (kWh)", "en": "Shared (kWh)", "fr": "Partagé (kWh)"},
    "surplus_kwh": {"nl": "Overschot (kWh)", "en": "Surplus (kWh)", "fr": "Surplus (kWh)"},
    "community_kwh": {"nl": "Uit de gemeenschap (kWh)", "en": "From the community (kWh)",
                      "fr": "De la communauté (kWh)"},
    "complement_kwh": {"nl": "Van de leverancier (kWh)", "en": "From the supplier (kWh)",
                       "fr": "Complément fournisseur (kWh)"},
    "self_consumption": {"nl": "Zelfconsumptie", "en": "Self-consumption", "fr": "Autoconsommation"},
    "self_sufficiency": {"nl": "Zelfvoorziening", "en": "Self-sufficiency", "fr": "Autoproduction"},
    "peak_import_kw": {"nl": "Piek bij de transformator (kW)", "en": "Peak at the transformer (kW)",
                       "fr": "Pointe au transformateur (kW)"},
    "gini": {"nl": "Ongelijkheid van de besparing (Gini)", "en": "Unevenness of the saving (Gini)",
             "fr": "Inégalité de l'économie (Gini)"},
    "proposals": {"nl": "Voorstellen", "en": "Proposals", "fr": "Propositions"},
    "no_proposals": {"nl": "Geen voorstellen.", "en": "No proposals.", "fr": "Aucune proposition."},
    "status_open": {"nl": "open", "en": "open", "fr": "ouverte"},
    "status_accepted": {"nl": "aangenomen", "en": "accepted", "fr": "adoptée"},
    "status_rejected": {"nl": "verworpen", "en": "rejected", "fr": "rejetée"},
    "proposal_terms": {"nl": "Door {proposer}; geldt vanaf {effective}; stemmen tot {closes}.",
                       "en": "By {proposer}; takes effect at {effective}; voting until {closes}.",
                       "fr": "Par {proposer} ; en vigueur à {effective} ; vote jusqu'au {closes}."},
    "tally": {"nl": "Voor {yes}, tegen {no}, onthouden {abstain}.", "en": "Yes {yes}, no {no}, abstain {abstain}.",
              "fr": "Pour {yes}, contre {no}, abstention {abstain}."},
    "you_voted": {"nl": "U stemde: {choice}.", "en": "You voted: {choice}.", "fr": "Vous avez voté : {choice}."},
    "vote_yes": {"nl": "Voor", "en": "Yes", "fr": "Pour"},
    "vote_no": {"nl": "Tegen", "en": "No", "fr": "Contre"},
    "vote_abstain": {"nl": "Onthouden", "en": "Abstain", "fr": "Abstention"},
    "on_reference": {"nl": "U heeft zelf het vaste tarief ({plan}); onder Leren ziet u wat een dynamisch tarief had "
                           "gekost.", "en": "You are on the fixed tariff ({plan}) yourself; Learn shows what a dynamic "
                           "tariff would have cost.", "fr": "Vous avez vous-même le tarif fixe ({plan}) ; Apprendre "
                           "montre ce qu'un tarif dynamique aurait coûté."},
    "compare": {"nl": "Met een vast tarief ({plan}) was het {amount} geweest.",
                "en": "With a fixed tariff ({plan}) it would have been {amount}.",
                "fr": "Avec un tarif fixe ({plan}), cela aurait été {amount}."},
    "no_costs": {"nl": "Nog geen afgerekende maand.", "en": "No settled month yet.", "fr": "Aucun mois réglé."},
    "number": {"nl": "Nummer", "en": "Number", "fr": "Numéro"},
    "kind": {"nl": "Soort", "en": "Kind", "fr": "Type"},
    "period": {"nl": "Periode", "en": "Period", "fr": "Période"},
    "issued": {"nl": "Datum", "en": "Issued", "fr": "Date"},
    "corrects": {"nl": "Corrigeert", "en": "Corrects", "fr": "Corrige"},
    "view": {"nl": "Bekijken", "en": "View", "fr": "Voir"},
    "no_invoices": {"nl": "Nog geen facturen.", "en": "No invoices yet.", "fr": "Pas encore de factures."},
    "invoice": {"nl": "factuur", "en": "invoice", "fr": "facture"},
    "credit_note": {"nl": "creditnota", "en": "credit note", "fr": "avoir"},
    "debit_note": {"nl": "debetnota", "en": "debit note", "fr": "note de débit"},
    "members": {"nl": "Leden", "en": "Members", "fr": "Membres"},
    "participant": {"nl": "Deelnemer", "en": "Participant", "fr": "Participant"},
    "connections": {"nl": "Aansluitingen", "en": "Connections", "fr": "Raccordements"},
    "totals_title": {"nl": "Totalen per deelnemer, {period}", "en": "Totals per participant, {period}",
                     "fr": "Totaux par participant, {period}"},
    "owed": {"nl": "Te betalen", "en": "Owed", "fr": "Dû"},
    "billrun": {"nl": "Factuurrondes", "en": "Bill runs", "fr": "Facturations"},
    "settled": {"nl": "Afgerekend", "en": "Settled", "fr": "Réglé"},
    "documents": {"nl": "Documenten", "en": "Documents", "fr": "Documents"},
    "kpis": {"nl": "Kerncijfers", "en": "Key figures", "fr": "Indicateurs"},
    "taken_kwh": {"nl": "Afgenomen (kWh)", "en": "Taken (kWh)", "fr": "Prélevé (kWh)"},
    "fed_kwh": {"nl": "Teruggeleverd (kWh)", "en": "Fed in (kWh)", "fr": "Injecté (kWh)"},
    "load_title": {"nl": "Totale belasting van het gebied, laatste 7 dagen",
                   "en": "Total load of the area, last 7 days", "fr": "Charge totale de la zone, 7 derniers jours"},
    "households": {"nl": "Alleen huishoudens die toestemming gaven voor de netbeheerder tellen mee, en alleen "
                         "kwartieren met minstens {n} van hen worden getoond.",
                   "en": "Only households that agreed to share with the grid operator count, and only quarter-hours "
                         "with at least {n} of them are shown.",
                   "fr": "Seuls les foyers ayant consenti au partage avec le gestionnaire de réseau comptent, et "
                         "seuls les quarts d'heure d'au moins {n} d'entre eux sont affichés."},
    "too_few": {"nl": "Te weinig huishoudens voor een totaal.", "en": "Too few households for an aggregate.",
                "fr": "Trop peu de foyers pour un agrégat."},
    "learn": {"nl": "Leren", "en": "Learn", "fr": "Apprendre"},
    "performance": {"nl": "Prestaties", "en": "Performance", "fr": "Performance"},
    "alerts": {"nl": "Meldingen", "en": "Alerts", "fr": "Alertes"},
    "export_nav": {"nl": "Exporteren", "en": "Export", "fr": "Exporter"},
    "bad_field": {"nl": "Ongeldige waarde voor {field}.", "en": "Invalid value for {field}.",
                  "fr": "Valeur invalide pour {field}."},
    "learn_intro": {"nl": "Wat als? Herbereken de laatste afgerekende maand ({period}) met uw eigen meetwaarden.",
                    "en": "What if? Recompute the last settled month ({period}) on your own readings.",
                    "fr": "Et si ? Recalculez le dernier mois réglé ({period}) sur vos propres mesures."},
    "shift_title": {"nl": "Een apparaat verschuiven", "en": "Move an appliance", "fr": "Déplacer un appareil"},
    "shift_kwh": {"nl": "kWh per dag", "en": "kWh per day", "fr": "kWh par jour"},
    "from_hour": {"nl": "van uur", "en": "from hour", "fr": "de l'heure"},
    "to_hour": {"nl": "naar uur", "en": "to hour", "fr": "à l'heure"},
    "battery_title": {"nl": "Een thuisbatterij", "en": "A home battery", "fr": "Une batterie domestique"},
    "battery_kwh": {"nl": "Capaciteit (kWh)", "en": "Capacity (kWh)", "fr": "Capacité (kWh)"},
    "battery_kw": {"nl": "Vermogen (kW)", "en": "Power (kW)", "fr": "Puissance (kW)"},
    "battery_rule": {"nl": "Laadt met zonne-overschot, ontlaadt voor eigen verbruik, nooit uit het net; start leeg.",
                     "en": "Charges from solar surplus, discharges to cover use, never from the grid; starts empty.",
                     "fr": "Se charge du surplus solaire, se décharge pour la consommation, jamais du réseau ; "
                           "démarre vide."},
    "battery_hourly": {"nl": "Een batterij vraagt kwartierwaarden.", "en": "A battery needs quarter-hour readings.",
                       "fr": "Une batterie demande des mesures au quart d'heure."},
    "recompute": {"nl": "Herberekenen", "en": "Recompute", "fr": "Recalculer"},
    "as_billed": {"nl": "Zoals het was", "en": "As it was", "fr": "Tel quel"},
    "with_change": {"nl": "Met de wijziging", "en": "With the change", "fr": "Avec le changement"},
    "difference": {"nl": "Verschil", "en": "Difference", "fr": "Différence"},
    "plans_title": {"nl": "Dezelfde maand onder elk tarief", "en": "The same month under every plan",
                    "fr": "Le même mois sous chaque tarif"},
    "plan": {"nl": "Tarief", "en": "Plan", "fr": "Tarif"},
    "yours": {"nl": "uw tarief", "en": "your plan", "fr": "votre tarif"},
    "not_computable": {"nl": "– = niet te berekenen met de bekende gegevens.",
                       "en": "– = cannot be computed from the data known.",
                       "fr": "– = non calculable avec les données connues."},
    "perf_title": {"nl": "Gemiddelde prijs per kWh", "en": "Average price per kWh", "fr": "Prix moyen par kWh"},
    "you": {"nl": "U (EUR/kWh)", "en": "You (EUR/kWh)", "fr": "Vous (EUR/kWh)"},
    "community_avg": {"nl": "Gemeenschap (EUR/kWh)", "en": "Community (EUR/kWh)", "fr": "Communauté (EUR/kWh)"},
    "percentile": {"nl": "% leden dat meer betaalde", "en": "% of members who paid more",
                   "fr": "% des membres ayant payé plus"},
    "trend": {"nl": "Verschil met vorige maand", "en": "Change from last month", "fr": "Écart avec le mois précédent"},
    "when": {"nl": "Wanneer", "en": "When", "fr": "Quand"},
    "no_alerts": {"nl": "Geen meldingen op dit moment.", "en": "No alerts right now.",
                  "fr": "Aucune alerte pour le moment."},
    "alerts_rules": {"nl": "Regels: goedkoopste 3 uur morgen (als de prijzen bekend zijn), negatieve prijzen, "
                           "congestietoeslag, ongewoon verbruik gisteren.",
                     "en": "Rules: cheapest 3 hours tomorrow (when prices are known), negative prices, congestion "
                           "surcharge, unusual use yesterday.",
                     "fr": "Règles : 3 heures les moins chères demain (si les prix sont connus), prix négatifs, "
                           "supplément de congestion, consommation inhabituelle hier."},
    "alert_cheapest_title": {"nl": "Goedkoopste venster", "en": "Cheapest window", "fr": "Créneau le moins cher"},
    "alert_cheapest": {"nl": "Morgen zijn de {hours} uur tot {end} het goedkoopst: gemiddeld {eur_per_kwh} EUR/kWh.",
                       "en": "Tomorrow the {hours} hours up to {end} are cheapest: {eur_per_kwh} EUR/kWh on average.",
                       "fr": "Demain, les {hours} heures jusqu'à {end} sont les moins chères : {eur_per_kwh} EUR/kWh "
                             "en moyenne."},
    "alert_negative_title": {"nl": "Negatieve prijzen", "en": "Negative prices", "fr": "Prix négatifs"},
    "alert_negative": {"nl": "{count} kwartier(en) met een negatieve marktprijs, laagste {eur_per_kwh} EUR/kWh.",
                       "en": "{count} quarter-hour(s) with a negative market price, lowest {eur_per_kwh} EUR/kWh.",
                       "fr": "{count} quart(s) d'heure à prix de marché négatif, le plus bas {eur_per_kwh} EUR/kWh."},
    "alert_congestion_title": {"nl": "Congestietoeslag", "en": "Congestion surcharge",
                               "fr": "Supplément de congestion"},
    "alert_congestion": {"nl": "{count} kwartier(en) met congestietoeslag, tot {eur_per_kwh} EUR/kWh.",
                         "en": "{count} quarter-hour(s) with a congestion surcharge, up to {eur_per_kwh} EUR/kWh.",
                         "fr": "{count} quart(s) d'heure avec supplément de congestion, "
                               "jusqu'à {eur_per_kwh} EUR/kWh."},
    "alert_unusual_title": {"nl": "Ongewoon verbruik", "en": "Unusual use", "fr": "Consommation inhabituelle"},
    "alert_unusual": {"nl": "Gisteren nam u {kwh} kWh af; op die weekdag is dat gewoonlijk {usual_kwh} kWh "
                            "(gemiddelde van {weeks} weken).",
                      "en": "Yesterday you took {kwh} kWh; on that weekday you usually take {usual_kwh} kWh "
                            "(mean of {weeks} weeks).",
                      "fr": "Hier vous avez prélevé {kwh} kWh ; ce jour de la semaine, c'est d'habitude "
                            "{usual_kwh} kWh "
                            "(moyenne de {weeks} semaines)."},
    "export_intro": {"nl": "Uw eigen gegevens om te downloaden.", "en": "Your own data to download.",
                     "fr": "Vos propres données à télécharger."},
    "not_found": {"nl": "Niet gevonden.", "en": "Not found.", "fr": "Introuvable."},
}


def t(key: str, lang: str, **fields: object) -> str:
    text = TEXT[key][lang]
    return text.format(**fields) if fields else text


def texts(lang: str) -> dict[str, str]:
    """All texts without placeholders in ``lang``, for a template."""
    return {k: v[lang] for k, v in TEXT.items() if "{" not in v[lang]}


def from_accept_language(header: str | None) -> str:
    """The best of nl, en, fr for an Accept-Language header (quality values honoured), else the default."""
    best, best_q = DEFAULT_LANG, -1.0
    for i, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower()[:2]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        q -= i * 1e-6  # earlier wins on a tie
        if lang in LANGS and q > best_q:
            best, best_q = lang, q
    return best


def number(value: Decimal | float | int, lang: str, digits: int = 2) -> str:
    return format_decimal(value, locale=LOCALES[lang], format="#,##0." + "0" * digits)


def money(cents: int, lang: str) -> str:
    return format_currency(Decimal(cents).scaleb(-2), "EUR", locale=LOCALES[lang])


def day(d: date, lang: str) -> str:
    return format_date(d, format="long", locale=LOCALES[lang])
