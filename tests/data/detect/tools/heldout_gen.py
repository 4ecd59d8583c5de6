#!/usr/bin/env python3
"""Writes ../heldout.jsonl, the blind held-out set for the sensitive-data detector.

    python3 tests/data/detect/tools/heldout_gen.py            # writes tests/data/detect/heldout.jsonl
    python3 tests/data/detect/tools/heldout_gen.py --check    # regenerates and compares, no write

Deterministic: one seeded RNG (heldout_lib.R), records built in a fixed order. Texts are written by
hand; checksummed values (cards, IBANs, NHS numbers, wallets, tokens, JWTs, PEM blocks) are generated.
Entities are marked inline as ⟦KIND|value⟧ and stripped, so every label is an exact substring and is
listed once per marked occurrence. See ../README.md, "Held-out set".

Do not tune the detector against this file: it exists to give a blind estimate.
"""
import collections
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from heldout_lib import *  # noqa: E402,F401,F403
from heldout_lib import R  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "heldout.jsonl")


def E(kind, value):
    assert "⟦" not in value and "⟧" not in value
    return f"⟦{kind}|{value}⟧"


def _k(kind):
    return lambda v: E(kind, v)


P, AD, EM, PH = _k("PERSON"), _k("STREET_ADDRESS"), _k("EMAIL"), _k("PHONE")
DOB, MRN, MC = _k("DATE_OF_BIRTH"), _k("MEDICAL_RECORD_NUMBER"), _k("MEDICAL_CONDITION")
IP, MAC = _k("IP_ADDRESS"), _k("MAC_ADDRESS")
CC, IB, BIC = _k("CREDIT_CARD"), _k("IBAN"), _k("SWIFT_BIC")
SSN, ITIN, NINO, NHS, PP = _k("US_SSN"), _k("US_ITIN"), _k("UK_NINO"), _k("UK_NHS"), _k("PASSPORT")
W = _k("CRYPTO_WALLET")
AK, SK, GH, SL = _k("AWS_ACCESS_KEY"), _k("AWS_SECRET_KEY"), _k("GITHUB_TOKEN"), _k("SLACK_TOKEN")
ST, GK, OA, JW = _k("STRIPE_KEY"), _k("GOOGLE_API_KEY"), _k("OPENAI_API_KEY"), _k("JWT")
PK, PW, GS = _k("PRIVATE_KEY"), _k("PASSWORD"), _k("GENERIC_SECRET")

PREFIX = {"support_ticket": "ticket", "clinical_note": "clin", "chat_log": "chat", "code": "code",
          "config": "config", "form": "form", "email": "email", "finance": "fin", "negative": "neg"}
RECORDS = []
_n = collections.Counter()
MARK = re.compile(r"⟦([A-Z_]+)\|(.*?)⟧", re.S)


def rec(genre, text):
    text = text.strip("\n")
    ents = [{"kind": m.group(1), "value": m.group(2)} for m in MARK.finditer(text)]
    plain = MARK.sub(lambda m: m.group(2), text)
    assert "⟦" not in plain and "⟧" not in plain, plain[:80]
    if genre == "negative":
        assert not ents
    _n[genre] += 1
    RECORDS.append({"id": f"ho-{PREFIX[genre]}-{_n[genre]:03d}", "genre": genre, "text": plain, "entities": ents})


def neg(text):
    rec("negative", text)


# =====================================================================================  support tickets
def tickets():
    c = card("453914", 16)
    rec("support_ticket", f"""
Ticket #88213 | Priority: High | Channel: web form
Requester: {P("Harriet Ashworth")} <{EM("harriet.ashworth@example.org")}>
Subject: Charged twice for annual plan

Hi, I was billed twice on 02/05 for the annual plan (order ORD-2024-118839). The card is a Visa ending {c[-4:]}, full number {CC(grp(c, [4, 4, 4, 4]))} if you need to find it, expiry 09/27. My billing address is {AD("22 Tannery Row, Kendal LA9 4QS")}. Please refund one of the charges to the same card.
Callback: {PH("07700 900417")}
""")
    rec("support_ticket", f"""
SEC-2291  Rotate leaked AWS key
Reporter: {P("Tomasz Wiśniewski")}    Assignee: {P("Imogen Carver")}    Labels: security, p1

Found this pasted in the "Staging quick start" Confluence page (last edited by {P("Daniel Okafor")} on 14 Feb):

    aws_access_key_id = {AK(aws_ak())}
    aws_secret_access_key = {SK(aws_sk())}

Key belongs to IAM user svc-reporting in account 210987654321. Please deactivate + rotate, then purge the page history.
""")
    rec("support_ticket", f"""
**kwame-m** commented 3 days ago

Still failing on `main` after the 3.4.0-rc.2 bump. Full log from my machine:

```
$ GITHUB_TOKEN={GH(gh("ghp_"))} ./scripts/release.sh --dry-run
==> building widgetry@3.4.0-rc.2 (commit 9f3c2a71e4b0d85c6a1f2e3b4c5d6e7f8091a2b3)
error: HTTP 401 Unauthorized from https://api.github.com/repos/acme-labs/widgetry/releases
```

Ubuntu 22.04.4, node v20.11.1, npm 10.2.4

**imani-d** commented 3 days ago

@kwame-m you just pasted a live token into a public issue. Please revoke it right now, I've hidden the comment.
""")
    rec("support_ticket", f"""
KYC review – case 55-1093
Customer: Mr {P("Rhys Llewellyn")}, DOB {DOB("19/11/1984")}
NI number: {NINO(nino())}    Passport no.: {PP("533218790")} (GBR, expires 2031)
Address on file: {AD("9 Heol y Nant, Pontypridd CF37 2DJ")}
Proof of address: council tax bill dated 04/01/2024 (accepted).
Outcome: verified, risk rating LOW. Reviewed by {P("Siobhan Mulcahy")} (Compliance).
""")
    iccid = luhn_complete("8944" + rs(14, DIG))
    rec("support_ticket", f"""
Case 00734519 – SIM swap request (ESCALATED)
Caller said she was {P("Jasmine Whitaker")} and read out SSN {SSN(ssn())} plus the account PIN. Voice did not match previous calls.
New SIM ICCID {iccid} was NOT activated. Service address {AD("3180 NE Alberta St, Portland, OR 97211")}; number on account {PH("(503) 555-0148")}.
Next step: fraud team to call back on the number on file only.
""")
    rec("support_ticket", f"""
Betreff: Rücklastschrift – neue Bankverbindung

Guten Tag,

meine Bankverbindung hat sich geändert. Bitte ziehen Sie den Beitrag ab dem nächsten Monat von diesem Konto ein:

Kontoinhaber: {P("Lukas Brandt")}
IBAN: {IB(mk_iban("DE"))}
BIC: {BIC("COBADEFFXXX")}
Anschrift: {AD("Kastanienallee 41, 10435 Berlin")}
Telefon: {PH("+49 30 23125 117")}

Die Rücklastschriftgebühr von 3,50 € übernehme ich selbstverständlich.

Mit freundlichen Grüßen
{P("Lukas Brandt")}
Kundennummer 44-0019-3827
""")
    rec("support_ticket", f"""
INC0049912 – Add device to NAC allow-list
Caller: {P("Priyanka Desai")} (Finance, 4th floor)
Device: Dell Latitude 7440, asset tag LT-08831, BIOS 1.14.0
Wi-Fi MAC: {MAC(mac(":", True))}    Ethernet (dock) MAC: {MAC(mac("-"))}
Last DHCP lease: {IP("10.20.14.87")} on VLAN 120
Resolution: added to NAC group FIN-LAPTOPS, user to reboot.
""")
    rec("support_ticket", f"""
#20931 "Locked out of payroll portal" — opened by {P("Marcus Delaney")}

I reset it yesterday to {PW("Sunfl0wer!Harbour")} but the login page still says invalid credentials. Employee ID E-20417, work email {EM("marcus.delaney@example.com")}. Can someone unlock it before Friday's run?
""")
    rec("support_ticket", f"""
Report #2304411 (Triaged, severity Medium)
Title: Slack incoming webhook exposed in public JS bundle

Steps to reproduce:
1. Open https://status.example.net/ and view source of /static/app.4f9c2e1b.js
2. Search for "hooks.slack" → `const ALERT_HOOK = "{SL(slack_hook())}";`
3. curl -X POST -d '{{"text":"test"}}' to that URL posts into #ops-alerts.

Impact: anyone can post arbitrary messages into the internal channel.
Researcher: {P("Fatima Al-Sayed")}
""")
    rec("support_ticket", f"""
Hi team, checkout has been broken since we rotated keys this morning. Here is exactly what is in our env now, can you spot what's wrong?

STRIPE_SECRET_KEY={ST(stripe("sk_live_", 99))}
STRIPE_WEBHOOK_ENDPOINT=we_1P2xQ7LkdIwHu7ixZf0a3B9c

Payments fail with "No such customer: cus_Q3kM8yXw2LzR1a".

{P("Brittany Kowalski")}
CTO, Kowalski Home Goods
""")
    rec("support_ticket", f"""
NHS App support – ref 7741-22
Patient: {P("Olumide Adeyemi")}, NHS number {NHS(nhs(" "))}, date of birth {DOB("2 February 1958")}
Problem: repeat prescription for atorvastatin 20 mg (for {MC("hypercholesterolaemia")}) not showing in the app, although the practice says it was issued on 12 March.
Practice: Riverside Medical Centre (ODS Y02837). Passed to 2nd line.
""")
    rec("support_ticket", f"""
Abuse report ABU-66120 — SSH brute force
Source addresses: {IP("203.0.113.54")}, {IP("198.51.100.201")} and {IP("2001:db8:4f2a::17")}
Window: 2024-05-12T03:14:00Z to 03:52:00Z, ~4,000 auth failures/min against {IP("192.0.2.10")} port 22
Our customer contact for that range: {P("Ingrid Solberg")}, {EM("ingrid@solberg-hosting.example")}
Please confirm action taken within 48 h.
""")
    rec("support_ticket", f"""
Booking QX7P4L – name correction request (agent notes)
PAX 1: {P("MORALES RUIZ/JAVIER")} MR   passport {PP("PAF238114")} (ESP)
PAX 2: {P("DELGADO/CARMEN")} MS   passport {PP("PAG904571")} (ESP)
Customer wants PAX 2 changed to married name; sent scan of libro de familia.
Contact: {PH("+34 612 345 678")} / {EM("javi.morales@example.org")}
Fare rules allow 1 free correction. Flight IB3166 MAD-LHR 14JUN, seats 23A/23B.
""")
    rec("support_ticket", f"""
Account setup exception – no SSN
Applicant {P("Nguyen Thi Lan")} opened electric service using ITIN {ITIN(itin())} instead of an SSN; deposit waived per policy 4.2.
Service address: {AD("2207 Orchard Hollow Ln, San Jose, CA 95122")}
Mobile {PH("408-555-0119")}. Meter #77-310-2261.
""")
    tx = hexs(64)
    rec("support_ticket", f"""
Subject: Withdrawal stuck for 6 hours!!

I withdrew 0.42 BTC to my own wallet {W(btc_wpkh())} and it still shows pending. txid {tx}.
Also my ETH deposit address in the app changed to {W(eth())}, is that normal??
Username: leonie_k   Registered email: {EM("leonie.krause@example.net")}
— {P("Leonie Krause")}
""")
    rec("support_ticket", f"""
Zendesk #51920 · Internal note
Spoke to {P("Arjun Nair")} on the phone. He confirmed the last four of the card but then read the whole thing out: {CC(card("5425", 16))} exp 11/26. I did NOT store it in the CRM, only in this note — can someone with admin redact this note?
Callback number he gave: {PH("+44 161 496 0372")}
""")


# =====================================================================================  clinical
def clinical():
    rec("clinical_note", f"""
DISCHARGE SUMMARY — Ward 7B, St Aldhelm's Hospital
Patient: {P("Margaret Ellen Pryce")}      Hosp no: {MRN("RX0481172")}      NHS: {NHS(nhs(" "))}
DOB: {DOB("03/08/1941")}      Address: {AD("17 Beckside Gardens, Keswick CA12 5PH")}
Admitted 11/03/2024 via ED      Discharged 19/03/2024
Consultant: Dr {P("Anand Venkataraman")} (Respiratory)

Diagnoses: {MC("Community-acquired pneumonia")} ({MC("J18.9")}); background {MC("COPD")} ({MC("J44.9")}) and {MC("atrial fibrillation")} ({MC("I48.9")}).
Course: treated with IV co-amoxiclav then oral doxycycline; CRP 212 -> 31. O2 weaned day 4.
Meds on discharge: apixaban 5 mg BD, Trelegy 1 puff OD, doxycycline 100 mg OD (2 more days).
Follow-up: GP ({P("Helen Marsh")}, Keswick Health Centre) to review in 2 weeks; CXR in 6 weeks.
""")
    rec("clinical_note", f"""
PATHOLOGY — CLINICAL BIOCHEMISTRY                    Lab no. 24H118372
Patient: {P("KOWALCZYK, Małgorzata")}   MRN: {MRN("00917364")}   Sex: F   DOB: {DOB("1979-06-22")}
Requested by: Dr {P("P. Okonkwo")}, Diabetes Clinic      Collected: 2024-06-03 08:12

Test              Result   Units          Flag   Ref. range
HbA1c             71       mmol/mol       H      20-41
Glucose (fast)    9.4      mmol/L         H      3.9-5.5
Creatinine        118      umol/L         H      45-84
eGFR              48       mL/min/1.73m2  L      >90

Comment: consistent with poorly controlled {MC("type 2 diabetes mellitus")}; eGFR in keeping with known {MC("chronic kidney disease")} ({MC("N18.3")}).
Authorised by {P("Chiara Esposito")}, Biomedical Scientist, 2024-06-03 14:40
""")
    rec("clinical_note", f"""
S: 34F, 3 days burning on passing urine + frequency. No fever/loin pain. Not pregnant.
O: T 37.1, HR 82. Urine dip: nitrites +, leucocytes ++.
A: uncomplicated {MC("urinary tract infection")} ({MC("N39.0")})
P: nitrofurantoin 100 mg MR BD x3/7, safety-netted, re-contact if fever.
-- {P("Chloé Lefebvre")} | MRN {MRN("CH-5520918")} | DOB {DOB("14.02.1990")} | mob {PH("07700 900862")}
""")
    rec("clinical_note", f"""
Sehr geehrte Frau Kollegin Dr. {P("Sabine Vogel")},

wir berichten über Ihren Patienten, Herrn {P("Jürgen Hoffmann")}, geb. {DOB("07.09.1956")}, wohnhaft {AD("Am Mühlbach 7, 82031 Grünwald")}, Pat.-ID {MRN("7730145")}, der sich vom 02.04. bis 09.04.2024 in unserer stationären Behandlung befand.

Diagnosen:
- {MC("Akuter Myokardinfarkt")} ({MC("I21.4")})
- {MC("Arterielle Hypertonie")} ({MC("I10")})
- {MC("Diabetes mellitus Typ 2")} ({MC("E11.9")})

Therapie: Koronarangiographie mit DES-Implantation RIVA. Entlassmedikation siehe Anlage.

Mit freundlichen kollegialen Grüßen
Prof. Dr. med. {P("Klaus-Dieter Sommer")}, Chefarzt Kardiologie
""")
    rec("clinical_note", f"""
COMPTE RENDU DE CONSULTATION — Service de pneumologie
Patiente : Mme {P("Élodie Marchand")}, née le {DOB("23/05/1987")}
IPP : {MRN("80045127")}
Adresse : {AD("14 rue des Tanneurs, 67000 Strasbourg")}
Motif : {MC("asthme")} mal contrôlé ({MC("J45.9")}), 3 exacerbations depuis janvier.
Conclusion : majoration du traitement de fond (palier 4), éducation thérapeutique, revoir dans 3 mois avec EFR.
Dr {P("Antoine Girard")}, pneumologue
""")
    rec("clinical_note", f"""
ED TRIAGE   03/14/2024 02:47   Acuity ESI 3
Pt: {P("Tyler Brooks")}, 29M, DOB {DOB("07/04/1994")}, MRN {MRN("5508213-4")}
CC: fall from ladder ~6 ft, L wrist pain + deformity, no LOC.
PMH: {MC("epilepsy")} (on levetiracetam 500 mg BID), NKDA.
Vitals: BP 138/84, HR 96, RR 18, SpO2 99% RA, pain 8/10.
Emergency contact: {P("Rebecca Lindgren")} (partner) {PH("801-555-0163")}
Insurance: Blue Horizon PPO, member ID XJH449120337, group 00481
Triage RN: {P("D. Carter")}
""")
    rec("clinical_note", f"""
CT HEAD WITHOUT CONTRAST                         Accession RAD-24-0093318
Patient: {P("Okafor, Daniel")}   MRN {MRN("01-44-8821")}   DOB {DOB("1966-12-01")}
Clinical info: worsening headaches, known {MC("migraine")} ({MC("G43.9")}). Exclude SOL.
Findings: No acute intracranial haemorrhage, mass effect or midline shift. Ventricles normal in size. Paranasal sinuses clear.
Impression: Normal non-contrast CT head.
Reported by Dr {P("Maeve Gallagher")}, Consultant Radiologist, 2024-02-19 16:05
""")
    rec("clinical_note", f"""
Dear colleague,

Re: {P("Seán O'Brien")}, born {DOB("30 January 1992")}, {AD("41 Glenview Park, Dublin 9")}

I would be grateful if the community mental health team could see this 32-year-old man, who has a six-year history of {MC("recurrent depressive disorder")} ({MC("F33.1")}) with comorbid {MC("generalised anxiety disorder")} ({MC("F41.1")}). He has not responded to two SSRIs and has had passive suicidal ideation, without plans, over the past month.

Yours sincerely,
Dr {P("Niamh Walsh")}, GP
""")
    rec("clinical_note", f"""
HANDOVER 19:30 — Ward 22 (surgical)
Bay 3 bed 12: {P("Hans-Peter Krüger")}, 78, hosp no {MRN("K0091234")}. Day 2 post R hemicolectomy for {MC("caecal adenocarcinoma")}. Background {MC("CKD")}, {MC("gout")}. Stoma active. Keep NBM until surgical review.
Bay 3 bed 14: {P("Aisha Rahman")}, 45, hosp no {MRN("K0093377")}. Admitted with {MC("diabetic ketoacidosis")}, on FRIII, ketones 1.2 (down from 4.8). Hourly CBG.
Side room 4: awaiting bed on AMU, obs stable.
""")
    rec("clinical_note", f"""
KARTA INFORMACYJNA LECZENIA SZPITALNEGO
Oddział Chorób Wewnętrznych
Pacjent: {P("Piotr Zieliński")}           Nr historii choroby: {MRN("24/11872")}
Data urodzenia: {DOB("14.03.1985")}
Adres: {AD("ul. Długa 44/6, 80-831 Gdańsk")}
Rozpoznanie: {MC("Zapalenie płuc")} ({MC("J18.9")})
Leczenie: amoksycylina z kwasem klawulanowym, nawodnienie dożylne.
Lekarz prowadzący: dr n. med. {P("Katarzyna Lewandowska")}
""")
    rec("clinical_note", f"""
MICROBIOLOGY REPORT   Specimen: blood culture x2   Received 2024-08-02 21:10
Patient: {P("Dmitri Volkov")}   Hosp no {MRN("H7731906")}   Ward: ICU bed 6
Gram stain: Gram-positive cocci in clusters (both bottles, 14 h).
Identification: Staphylococcus aureus, MSSA. Sensitive to flucloxacillin, clindamycin.
Clinical details: {MC("sepsis")}, ? source {MC("cellulitis")} R leg. Phoned to Dr {P("Yusuf Demir")} 2024-08-03 11:02.
""")
    rec("clinical_note", f"""
Pharmacy — clinical screening note
{P("Giulia Romano")}, 67F (DOB {DOB("09/12/1956")}), MRN {MRN("00288410")}
New Rx: clarithromycin 500 mg BD for {MC("community-acquired pneumonia")}.
Interaction: patient also on simvastatin 40 mg for {MC("hyperlipidaemia")} — contraindicated. Advised prescriber to withhold simvastatin for the course. Also has {MC("hypothyroidism")} (levothyroxine 75 mcg), no interaction.
Pharmacist: {P("Owen Prichard")}
""")
    rec("clinical_note", f"""
Clinic letter — Paediatric Diabetes Service
Re: {P("Maya Chen")} (DOB {DOB("21/07/2013")}), NHS {NHS(nhs("-"))}
Parents: {P("Wei Chen")} and {P("Laura Chen")}, {AD("6 Orchard Way, Didcot OX11 7HB")}

Maya attended with her mother. Her {MC("type 1 diabetes")} ({MC("E10.9")}) is well controlled on her pump (HbA1c 51 mmol/mol). She also has {MC("coeliac disease")}, on a gluten-free diet. We will see her again in 3 months.
""")
    rec("clinical_note", f"""
VACCINATION RECORD (occupational health)
Name: {P("Ewa Nowicka")}     Employee no: 118204     DOB: {DOB("1995-04-30")}
Hep B course: 1st 12/01/2024, 2nd 09/02/2024, 3rd 12/07/2024 (batch AB7731C)
Anti-HBs 08/2024: >1000 mIU/mL (immune)
Declared conditions: {MC("psoriasis")} (no contraindication)
Nurse: {P("Bronwen Hughes")}, OH Department
""")
    rec("clinical_note", f"""
Physiotherapy progress note — 12 Aug
Pt {P("Lars Eriksen")} (MRN {MRN("PT-0044719")}) attended session 6/8 for {MC("frozen shoulder")} ({MC("M75.0")}) L side, secondary to {MC("type 2 diabetes")}.
ROM: flexion 120 (was 95), ER 30 (was 10). Pain 3/10. Continue HEP, add resisted ER band.
""")
    rec("clinical_note", f"""
Patient: {P("Rosa Jiménez")}   Historia clínica: {MRN("HC-2231908")}   Fecha de nacimiento: {DOB("05/10/1972")}
Domicilio: {AD("Calle del Prado 18, 28014 Madrid")}
Juicio clínico: {MC("fibrilación auricular")} paroxística ({MC("I48.0")}); {MC("hipertensión arterial")} ({MC("I10")}).
Plan: anticoagulación con apixabán, control en cardiología en 1 mes.
Firmado: Dra. {P("Lucía Fernández")}
""")


# =====================================================================================  chat logs
def chats():
    rec("chat_log", f"""
Harbour Road Pharmacy: Hi {P("Carmen")}, your prescription is ready to collect. Reply STOP to opt out.
{P("Carmen")}: thanks! can my husband pick it up? his name is {P("Luis Ortega")}
Harbour Road Pharmacy: Yes that's fine, he'll need to confirm your date of birth and postcode at the counter.
{P("Carmen")}: ok its {DOB("12/10/1983")} and TR18 4AH
Harbour Road Pharmacy: Perfect, thank you. Your sertraline will be in the controlled bag behind the counter.
""")
    pw = "xR7#kL2v!pQ9"
    rec("chat_log", f"""
[09:14] asilva: anyone know why staging-api can't reach the db?
[09:15] bkowal: works for me. what DATABASE_URL are you using?
[09:15] asilva: postgres://app_rw:{PW(pw)}@{IP("10.42.7.15")}:5432/orders
[09:16] bkowal: that's the old replica. use {IP("10.42.7.22")} and pls don't paste creds in #eng-general 😅
[09:16] asilva: oops. rotating now
""")
    pl = mk_iban("PL")
    rec("chat_log", f"""
Mama: Kochanie, wyślij mi jeszcze raz numer konta, bo nie mogę znaleźć
{P("Kasia")}: {IB(pl)}
{P("Kasia")}: odbiorca {P("Katarzyna Nowak")}, tytuł „na wakacje"
Mama: dziękuję córcia ❤️
""")
    rec("chat_log", f"""
Teams — HR Ops

{P("Grace Liu")} 10:02
quick q, the payroll import rejected {P("Oliver Pennington")}'s record, says NI number invalid

{P("Tom Baptiste")} 10:04
what did we have? the form says {NINO(nino(True))}

{P("Grace Liu")} 10:05
we had it without spaces: {NINO(nino(False))} — different number entirely, someone mistyped. I'll ask him
""")
    rec("chat_log", f"""
Live chat transcript — 14 Jun 2024
Agent #4471: Thanks for waiting. How can I help?
Visitor: i want to pay the outstanding balance by card
Agent #4471: Of course, for security please use the secure payment link I'll send — don't type card details here.
Visitor: too late lol its {CC(grp(card("4929", 16), [4, 4, 4, 4]))} 03/28 cvv 771
Agent #4471: I've masked that message. Could you confirm your name and email please?
Visitor: {P("Jack Thornton")}, {EM("jthornton88@example.net")}
""")
    rec("chat_log", f"""
#platform-alerts
bot-deploy    11:58  :rotating_light: Deploy of billing-svc failed on prod-eu-2
{P("Femi Adebayo")}  11:59  it's the new slack app token, I pasted it into values.yaml by mistake: {SL(slack_bot())}
{P("Femi Adebayo")}  11:59  and the maps key while I'm confessing: {GK(gkey())}
{P("Ritu Kapoor")}   12:01  revoking both. please use sealed secrets 🙏
""")
    rec("chat_log", f"""
From: {PH("+44 7700 900555")}
Your ParcelPal courier is on the way! Track: pp.example/t/8K2Q7. Reply STOP to opt out.

From: {PH("+44 7700 900231")}
hi it's {P("Dave")} from the flat viewing, can you text me the full address again? lost it

To: {PH("+44 7700 900231")}
sure – Flat 2, {AD("58 Marlowe Road, Leicester LE2 3FQ")}. buzz no. 2
""")
    rec("chat_log", f"""
[Telegram] OTC desk — 3 participants
@mk_trade: wire received. send USDT (ERC20) to {W(eth())}
@desk_anna: confirming address with you on call first
@mk_trade: fine. and the BTC leg to {W(btc_p2pkh())}
@desk_anna: called, confirmed both. sending 14:20 UTC
@desk_anna: btc leg done, txid {hexs(64)}
""")
    rec("chat_log", f"""
Landlord (Mr {P("Patel")}) 18:40: Hi, deposit is £1,350. Please transfer to my account, IBAN {IB(mk_iban("GB"))}, reference "58 Marlowe"
Me 18:42: is that a UK account? my banking app wants a sort code
Landlord (Mr {P("Patel")}) 18:43: sort code 20-32-53 account 41896652, same account
""")
    fr = mk_iban("FR")
    rec("chat_log", f"""
Salut {P("Mathilde")} ! Pour le week-end à Annecy, tu peux me rembourser ta part (186 €) ?
Voici mon RIB : {IB(fr)}
BIC {BIC("BNPAFRPPXXX")}
Titulaire : {P("Guillaume Perrin")}
Merci ! 😘
""")
    rec("chat_log", f"""
[WhatsApp] Familie Becker
{P("Jonas")}: Hier nochmal meine neue Adresse fürs Geburtstagspaket: {AD("Lindenstraße 27, 50674 Köln")}
Oma {P("Gerda")}: Danke mein Schatz. Und die neue Handynummer?
{P("Jonas")}: {PH("0152 28817386")}
""")
    rec("chat_log", f"""
#ml-experiments
{P("Priya Raman")}: the eval harness keeps 401-ing
{P("Daniel Weiss")}: what key is it using?
{P("Priya Raman")}: OPENAI_API_KEY={OA(oa_proj())}
{P("Daniel Weiss")}: that's a project key from the old org, and now it's in slack history. revoke + use the vault path
""")
    rec("chat_log", f"""
Patient portal — message from parent
Hi, I'm writing about my daughter {P("Isla MacKenzie")} (NHS number {NHS(nhs(None))}). Since starting the new inhaler for her {MC("asthma")} she has had bad nosebleeds. She also has {MC("eczema")}. Could the nurse call me back on {PH("0131 496 0617")}?
{P("Fiona MacKenzie")}
""")
    rec("chat_log", f"""
<netadm> who owns {IP("192.168.40.113")}? it's flooding ARP
<jlo> MAC {MAC(mac(":"))} — vendor is Raspberry Pi Trading
<jlo> lease says host "printer-bridge", last seen on sw3 port 17
<netadm> kill the port, I'll find whoever plugged it in
<jlo> also {IP("fe80::ba27:ebff:fe4c:1d2a")} is the same box
""")
    rec("chat_log", f"""
Hola {P("Marta")}, para el viaje a Cancún necesito los datos de tu madre tal como salen en el pasaporte:
nombre completo, número y fecha de nacimiento.
— {P("Ana Belén Castro Vidal")}, número {PP("PAK551902")}, fecha de nacimiento {DOB("17/03/1991")}. ¡Gracias!
""")
    rec("chat_log", f"""
Chat with Member Services — 06/02/2024
Member: hi i need to update my tax info on my brokerage acct
Rep: Sure. For verification, what's your full name and date of birth?
Member: {P("Darnell Hughes")}, dob {DOB("08/23/1979")}
Rep: Thanks. And the SSN you'd like on the account?
Member: {SSN(ssn(" "))}
Rep: Updated. You'll get a confirmation letter at {AD("1147 Cypress Bend Dr, Tallahassee, FL 32301")}.
""")
    rec("chat_log", f"""
#incident-2291  (private)
sre-bot: :fire: paging on-call
{P("María González")}: the leaked file is deploy/keys/edge-signer.pem. Contents:
```
{PK(pem_text("EC"))}
```
{P("María González")}: it's the prod request signer. rotating now, everything signed before 10:40 must be invalidated
""")
    rec("chat_log", f"""
SMS — Meridian Dental
Meridian Dental: Reminder: {P("Theo Grant")} has an appointment on Tue 18 Jun at 15:20 with Dr {P("Nadia Haddad")}. Reply Y to confirm or call {PH("0117 496 0815")}.
Reply: Y
""")
    rec("chat_log", f"""
[Discord] #support
zx_vera: bot token keeps getting reset, why
mod_kit: did you commit it? github scans for those
zx_vera: only to my private repo... oh wait the repo is public. the github one I mean, I also had this in the workflow: {GH(gh("ghs_"))}
mod_kit: yep that's why. revoke and rotate
""")



# =====================================================================================  code
def code():
    rec("code", f"""
Traceback (most recent call last):
  File "/srv/app/billing/tasks.py", line 212, in send_invoice
    mailer.send(to=customer["email"], subject=subject, body=body)
  File "/usr/lib/python3.11/smtplib.py", line 887, in sendmail
    raise SMTPRecipientsRefused(senderrs)
smtplib.SMTPRecipientsRefused: {{'{EM("megan.t@example.net")}': (550, b'5.1.1 <{EM("megan.t@example.net")}>: Recipient address rejected')}}

Locals at frame send_invoice:
  customer = {{'id': 88123, 'name': '{P("Megan Thistlewood")}', 'email': '{EM("megan.t@example.net")}', 'phone': '{PH("+44 20 7946 0321")}', 'vat_id': None}}
  invoice_no = 'INV-2024-004471'
""")
    rec("code", f"""
  501  cd ~/src/infra
  502  export AWS_PROFILE=prod-admin
  503  export AWS_ACCESS_KEY_ID={AK(aws_ak("ASIA"))}
  504  export AWS_SECRET_ACCESS_KEY={SK(aws_sk())}
  505  aws sts get-caller-identity
  506  mysql -h {IP("10.0.3.41")} -u reporting -p'{PW("Tr0ub4dor&3x")}' analytics
  507  curl -s -H "Authorization: Bearer {JW(jwt({"sub": "svc-reporting", "scope": "reports:read", "iat": 1717000000, "exp": 1717003600}))}" https://api.example.com/v2/me | jq .
  508  git push origin fix/ci-cache
  509  kubectl -n payments get pods -o wide
  510  history | tail -20
""")
    rec("code", f"""
2024-07-19 03:12:44.918 ERROR 1 --- [pool-3-thread-7] c.e.orders.sync.OrderSyncJob : sync failed after 3 attempts
org.postgresql.util.PSQLException: FATAL: password authentication failed for user "orders_svc"
	at org.postgresql.core.v3.ConnectionFactoryImpl.doAuthentication(ConnectionFactoryImpl.java:693)
	at org.postgresql.core.v3.ConnectionFactoryImpl.tryConnect(ConnectionFactoryImpl.java:203)
	at org.postgresql.Driver.connect(Driver.java:297)
	at com.example.orders.sync.OrderSyncJob.run(OrderSyncJob.java:88)
	... 14 common frames omitted
Caused by: configured url jdbc:postgresql://{IP("203.0.113.77")}:5432/orders?user=orders_svc&password={PW("Qm9v!2024stack")}&ssl=true
""")
    rec("code", f"""
func TestSepaBatch(t *testing.T) {{
	batch := Batch{{
		Debtor: Party{{Name: "{P("Anne-Sophie Dubois")}", IBAN: "{IB(mk_iban("FR", False))}", BIC: "{BIC("AGRIFRPP")}"}},
		Entries: []Entry{{
			{{Creditor: Party{{Name: "{P("Björn Lindqvist")}", IBAN: "{IB(mk_iban("SE", False))}", BIC: "{BIC("ESSESESS")}"}}, Amount: 125000}},
			{{Creditor: Party{{Name: "{P("Pieter van der Berg")}", IBAN: "{IB(mk_iban("NL", False))}", BIC: "{BIC("INGBNL2A")}"}}, Amount: 9900}},
		}},
	}}
	bad := "{bad_iban("DE", False)}" // wrong check digits on purpose
	if err := batch.Validate(); err != nil {{
		t.Fatalf("valid batch rejected: %v", err)
	}}
	if ValidateIBAN(bad) == nil {{
		t.Fatal("expected checksum error")
	}}
}}
""")
    rec("code", f"""
-- dump of prod.customers taken for the migration test, 2024-03-02 (DO NOT COMMIT)
INSERT INTO customers (id, full_name, email, ssn, dob, created_at) VALUES
  (1001, '{P("Cody Ramirez")}', '{EM("cody.ramirez@example.com")}', '{SSN(ssn())}', '{DOB("1988-03-12")}', '2023-11-02 10:14:00'),
  (1002, '{P("Alicia Moreno")}', '{EM("amoreno77@example.net")}', '{SSN(ssn())}', '{DOB("1979-10-30")}', '2023-11-02 10:19:41'),
  (1003, '{P("Trevor Hsu")}', '{EM("trevor.hsu@example.org")}', '{SSN(ssn())}', '{DOB("1995-01-08")}', '2023-11-03 08:01:12');
""")
    rec("code", f"""
// test/fixtures/payments.ts
export const STRIPE_KEY = process.env.STRIPE_KEY ?? "{ST(stripe("sk_test_", 99))}";

export const cards = {{
  visaDebit: "{CC("4000056655665556")}",
  mastercard2Series: "{CC("2223003122003222")}",
  declined: "{CC("4000000000000002")}",
  amex: "{CC("371449635398431")}",
}};

export const orderId = "{not_luhn("7001", 16)}"; // 16 digits but not a card
export const customerId = "cus_Q9xLm2Rt4KpZ8a";
""")
    npm = "npm_" + rs(36)
    rec("code", f"""
2024-05-30T10:22:13.4412345Z ##[group]Run npm publish --access public
2024-05-30T10:22:13.4419876Z npm publish --access public
2024-05-30T10:22:13.4420012Z shell: /usr/bin/bash -e {{0}}
2024-05-30T10:22:13.4420555Z ##[endgroup]
2024-05-30T10:22:13.9011234Z + echo "//registry.npmjs.org/:_authToken={GS(npm)}" > ~/.npmrc
2024-05-30T10:22:14.0012345Z npm notice Publishing to https://registry.npmjs.org/ with tag latest and public access
2024-05-30T10:22:14.8823410Z npm ERR! code E403
2024-05-30T10:22:14.8824101Z npm ERR! 403 403 Forbidden - PUT https://registry.npmjs.org/@acme%2fwidgets - You cannot publish over the previously published versions: 2.7.1.
2024-05-30T10:22:15.1029933Z + docker login -u ci-bot -p '{PW("Hx9-wQ2m-Lr7z-Pv4k")}' registry.example.com
2024-05-30T10:22:15.1191120Z ##[error]Process completed with exit code 1.
""")
    m = mac(":")
    rec("code", f"""
#[test]
fn parses_static_lease() {{
    let src = "host lab-scope {{ hardware ethernet {MAC(m)}; fixed-address {IP("192.168.7.201")}; }}";
    let lease = Lease::parse(src).unwrap();
    assert_eq!(lease.mac.to_string(), "{MAC(m)}");
    assert_eq!(lease.addr, "{IP("192.168.7.201")}".parse::<Ipv4Addr>().unwrap());
    assert_eq!(lease.hostname, "lab-scope");
}}
""")
    rec("code", f"""
## Reverse geocoding

```bash
curl "https://maps.googleapis.com/maps/api/geocode/json?latlng=51.5072,-0.1276&key={GK(gkey())}"
```

The response contains `results[0].formatted_address`. Quota is 2,500 requests/day on the free tier.
""")
    rec("code", f"""
In [14]: df[df.readmit_30d].head(3)
Out[14]:
   patient_id            name         dob        primary_dx  icd10  readmit_30d
0   {MRN("MRN004412")}     {P("Aoife Byrne")}  {DOB("1951-02-14")}     {MC("heart failure")}  {MC("I50.9")}         True
1   {MRN("MRN004871")}    {P("Kofi Boateng")}  {DOB("1948-09-30")}              {MC("COPD")}  {MC("J44.1")}         True
2   {MRN("MRN005032")}  {P("Hana Kobayashi")}  {DOB("1960-06-06")}         {MC("pneumonia")}  {MC("J18.9")}         True
""")
    rec("code", f"""
# db/seeds.rb
User.create!(
  name: "{P("Hiroshi Tanaka")}",
  email: "{EM("h.tanaka@example.com")}",
  phone: "{PH("+1 212 555 0187")}",
  address: "{AD("88 Quarry Hill Rd, Burlington, VT 05401")}"
)
User.create!(
  name: "{P("Amara Nwosu")}",
  email: "{EM("amara.nwosu@example.org")}",
  phone: "{PH("020 7946 0562")}",
  address: "{AD("5 Hollybush Lane, Harpenden AL5 4BT")}"
)
""")
    rec("code", f"""
{IP("198.51.100.23")} - - [12/Mar/2024:14:02:11 +0000] "GET /account/reset?email={EM("lena.fischer%40example.org")}&t=8f14e45fceea167a HTTP/1.1" 302 0 "-" "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
{IP("203.0.113.9")} - - [12/Mar/2024:14:02:15 +0000] "POST /api/login HTTP/1.1" 401 43 "-" "python-requests/2.31.0"
{IP("2001:db8:85a3::8a2e:370:7334")} - - [12/Mar/2024:14:02:19 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.29"
""")
    salt1, salt2 = rs(64, ALNUM + "!@#%^&*()-_[]{}<>~+=,.;:/?|"), rs(64, ALNUM + "!@#%^&*()-_[]{}<>~+=,.;:/?|")
    rec("code", f"""
<?php
/** The name of the database for WordPress */
define( 'DB_NAME', 'wp_prod' );
define( 'DB_USER', 'wp_admin' );
define( 'DB_PASSWORD', '{PW("Lg7$Wq2!zR")}' );
define( 'DB_HOST', '{IP("10.8.0.12")}' );
define( 'DB_CHARSET', 'utf8mb4' );

define( 'AUTH_KEY',         '{GS(salt1)}' );
define( 'SECURE_AUTH_KEY',  '{GS(salt2)}' );

$table_prefix = 'wp_';
define( 'WP_DEBUG', false );
""")
    rec("code", f"""
package com.example.helpdesk

object BuildConfigOverrides {{
    // TODO move to remote config before release!!
    const val OPENAI_KEY = "{OA(oa_legacy())}"
    const val SUPPORT_EMAIL = "{EM("android-support@example.com")}"
    const val MODEL = "gpt-4o-mini"
    const val MAX_TOKENS = 512
}}
""")
    rec("code", f"""
diff --git a/.env b/.env
new file mode 100644
index 0000000..4b6f1d2
--- /dev/null
+++ b/.env
@@ -0,0 +1,6 @@
+SLACK_BOT_TOKEN={SL(slack_bot())}
+SLACK_SIGNING_SECRET={GS(hexs(32))}
+AWS_ACCESS_KEY_ID={AK(aws_ak())}
+AWS_SECRET_ACCESS_KEY={SK(aws_sk())}
+SENTRY_ENVIRONMENT=staging
+LOG_LEVEL=debug
""")
    rec("code", f"""
import requests

resp = requests.get(
    "https://erp.example.com/api/v1/employees/4471",
    auth=("integration-user", "{PW("pV8#nT4q@Lm")}"),
    timeout=10,
)
print(resp.json())
# {{'id': 4471, 'name': '{P("Sophie Vogel")}', 'iban': '{IB(mk_iban("DE", False))}', 'nino': '{NINO(nino(False))}', 'dept': 'R&D'}}
""")
    rec("code", f"""
AxiosError: Request failed with status code 403
    at settle (/app/node_modules/axios/lib/core/settle.js:19:12)
    at IncomingMessage.handleStreamEnd (/app/node_modules/axios/lib/adapters/http.js:589:11)
  code: 'ERR_BAD_REQUEST',
  config: {{
    method: 'get',
    url: 'https://api.example.com/v1/tenants/71/users',
    headers: {{
      Accept: 'application/json',
      Authorization: 'Bearer {JW(jwt({"iss": "https://auth.example.com/", "sub": "auth0|65f1c2a9e4b0", "aud": "api", "iat": 1716200000, "exp": 1716286400, "scope": "users:read"}, "RS256"))}',
      'X-Request-Id': '{uuid4()}'
    }}
  }}
""")
    rec("code", f"""
# tests/test_signing.py
TEST_SIGNING_KEY = \"\"\"{PK(pem_text("RSA"))}
\"\"\"

def test_signature_roundtrip():
    sig = sign(b"payload", TEST_SIGNING_KEY)
    assert verify(b"payload", sig, public_key_of(TEST_SIGNING_KEY))
""")
    rec("code", f"""
$ git clone https://x-access-token:{GH(gh("ghs_"))}@github.com/acme-labs/infra-live.git
Cloning into 'infra-live'...
remote: Enumerating objects: 18231, done.
remote: Total 18231 (delta 0), reused 0 (delta 0), pack-reused 18231
Receiving objects: 100% (18231/18231), 9.42 MiB | 21.30 MiB/s, done.
$ echo {GH(gh("gho_"))} | gh auth login --with-token
""")
    rec("code", f"""
def test_invoice_wallets():
    inv = Invoice(amount_sats=125_000, memo="order 7781")
    inv.add_address("{W(btc_p2sh())}")        # legacy P2SH
    inv.add_address("{W(btc_wpkh())}")  # native segwit
    assert inv.primary.startswith("bc1")
    assert not is_valid_address("{broken_b58()}")  # broken checksum
""")


# =====================================================================================  config
def config():
    rec("config", f"""
apiVersion: v1
kind: Secret
metadata:
  name: payments-api
  namespace: prod
  labels:
    app.kubernetes.io/name: payments-api
    app.kubernetes.io/version: "2.14.3"
type: Opaque
stringData:
  DATABASE_PASSWORD: "{PW("Vx3!mQ8#rT1z")}"
  PSP_API_KEY: "{GS("live_" + hexs(40))}"
  tls.key: |
    {PK(pem_text("RSA", "    "))}
""")
    rec("config", f"""
# terraform.tfvars — prod
subscription_id = "{uuid4()}"
tenant_id       = "{uuid4()}"
client_id       = "{uuid4()}"
client_secret   = "{GS(rs(3, ALNUM) + "8Q~" + rs(34, ALNUM + "._-~"))}"

admin_username = "sqladmin"
admin_password = "{PW("Ph0enix#Rising2024")}"
bastion_ip     = "{IP("203.0.113.40")}"
location       = "westeurope"
tags = {{
  owner       = "platform-team"
  cost_centre = "CC-4410"
}}
""")
    rec("config", f"""
registry=https://registry.npmjs.org/
@acme:registry=https://npm.pkg.github.com/
//npm.pkg.github.com/:_authToken={GH(gh("ghp_"))}
//registry.npmjs.org/:_authToken={GS("npm_" + rs(36))}
email={EM("build-bot@example.com")}
always-auth=true
save-exact=true
""")
    rec("config", f"""
[distutils]
index-servers =
    pypi
    testpypi

[pypi]
username = __token__
password = {PW("pypi-AgEIcHlwaS5vcmc" + rs(140, B64U))}

[testpypi]
repository = https://test.pypi.org/legacy/
username = jwhitfield
password = {PW("Marmalade-Otter-42")}
""")
    rec("config", f"""
services:
  db:
    image: postgres:16.2-alpine
    restart: unless-stopped
    environment:
      POSTGRES_USER: keycloak
      POSTGRES_PASSWORD: {PW("Kc-db-2024!x")}
    networks:
      backend:
        ipv4_address: {IP("172.28.0.10")}
  minio:
    image: minio/minio:RELEASE.2024-05-10T01-41-38Z
    command: server /data --console-address ":9001"
    environment:
      MINIO_ROOT_USER: storage-admin
      MINIO_ROOT_PASSWORD: {PW("9vZ2pQx7LmR4tW1s")}
    ports:
      - "9000:9000"
      - "9001:9001"
networks:
  backend:
    external: true
""")
    rec("config", f"""
[default]
aws_access_key_id = {AK(aws_ak())}
aws_secret_access_key = {SK(aws_sk())}
region = eu-west-2

[profile analytics-ro]
aws_access_key_id = {AK(aws_ak())}
aws_secret_access_key = {SK(aws_sk())}
region = us-east-1
output = json
""")
    rec("config", f"""
{{
  "type": "service_account",
  "project_id": "acme-analytics-prod",
  "private_key_id": "{hexs(40)}",
  "private_key": "{PK(pem_json("PKCS8"))}\\n",
  "client_email": "{EM("bq-loader@acme-analytics-prod.iam.gserviceaccount.com")}",
  "client_id": "{rs(21, DIG)}",
  "auth_uri": "https://accounts.google.com/o/oauth2/auth",
  "token_uri": "https://oauth2.googleapis.com/token",
  "universe_domain": "googleapis.com"
}}
""")
    import base64 as _b64
    ca = _b64.b64encode((cert_pem() + "\n").encode()).decode()
    rec("config", f"""
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: https://{IP("198.51.100.40")}:6443
  name: prod-eu
contexts:
- context:
    cluster: prod-eu
    namespace: deploy
    user: ci-deployer
  name: ci@prod-eu
current-context: ci@prod-eu
users:
- name: ci-deployer
  user:
    token: {JW(jwt({"iss": "kubernetes/serviceaccount", "kubernetes.io/serviceaccount/namespace": "deploy", "kubernetes.io/serviceaccount/service-account.name": "ci-deployer", "sub": "system:serviceaccount:deploy:ci-deployer"}, "RS256"))}
""")
    rec("config", f"""
name: nightly-report
on:
  schedule:
    - cron: "0 5 * * *"
  workflow_dispatch: {{}}
jobs:
  report:
    runs-on: ubuntu-22.04
    env:
      SLACK_WEBHOOK_URL: {SL(slack_hook())}
      REPORT_DB_PASSWORD: "{PW("r3port-Gen!2024")}"
      GITHUB_TOKEN: ${{{{ secrets.GITHUB_TOKEN }}}}
    steps:
      - uses: actions/checkout@b4ffde65f46336ab88eb53be808477a3936bae11 # v4.1.1
      - uses: actions/setup-python@82c7e631bb3cdc910f68e0081d67478d79c6982d # v5.1.0
        with:
          python-version: "3.12"
      - run: python -m reports.nightly --since 24h
""")
    rec("config", f"""
machine api.heroku.com
  login {EM("ops@example.com")}
  password {PW(uuid4())}
machine git.heroku.com
  login {EM("ops@example.com")}
  password {PW(uuid4())}
machine ftp.example.org
  login backup
  password {PW("Tw1light_Sparrow")}
""")
    rec("config", f"""
# values-prod.yaml (chart: notifier 0.9.2)
replicaCount: 2
image:
  repository: ghcr.io/acme-labs/notifier
  tag: "0.9.2"
smtp:
  host: smtp.example.com
  port: 587
  username: {EM("notifications@example.com")}
  password: "{PW("Gq7!vRt2#Lm9")}"
  from: "Acme Alerts <{EM("alerts@example.com")}>"
resources:
  limits:
    cpu: 500m
    memory: 256Mi
""")
    rec("config", f"""
frontend admin
    bind {IP("192.0.2.15")}:8443 ssl crt /etc/haproxy/certs/admin.pem
    acl office src {IP("203.0.113.66")} {IP("203.0.113.67")}
    acl vpn src {IP("198.51.100.250")}
    http-request deny if !office !vpn
    default_backend app

backend app
    balance roundrobin
    server app1 {IP("10.1.0.11")}:8080 check inter 2s
    server app2 {IP("10.1.0.12")}:8080 check inter 2s
""")
    rec("config", f"""
# /etc/dhcp/dhcpd.conf — static reservations, 2nd floor (pool options are in dhcpd.pools.conf)
option routers {IP("192.168.10.1")};
option domain-name-servers {IP("192.168.10.3")};
host reception-printer {{
  hardware ethernet {MAC(mac(":"))};
  fixed-address {IP("192.168.10.20")};
}}
host cctv-nvr {{
  hardware ethernet {MAC(mac(":", True))};
  fixed-address {IP("192.168.10.21")};
}}
host door-controller {{
  hardware ethernet {MAC(mac(":"))};
  fixed-address {IP("192.168.10.22")};
}}
""")
    rec("config", f"""
spring.application.name=crm
spring.datasource.url=jdbc:mysql://{IP("10.12.0.5")}:3306/crm?useSSL=true&serverTimezone=UTC
spring.datasource.username=crm_app
spring.datasource.password={PW("N0rthW1nd$2024")}
spring.mail.host=smtp.example.org
spring.mail.username={EM("crm-mailer@example.org")}
spring.mail.password={PW("dTq8-Lz3v-Pw6x")}
jwt.signing.secret={GS(hexs(64))}
server.port=8443
""")
    rec("config", f"""
# .env.production
NEXTAUTH_URL=https://app.example.com
NEXTAUTH_SECRET={GS(b64(32))}
STRIPE_SECRET_KEY={ST(stripe("rk_live_", 99))}
NEXT_PUBLIC_MAPS_KEY={GK(gkey())}
OPENAI_API_KEY={OA(oa_proj())}
SLACK_APP_TOKEN={SL(slack_app())}
DATABASE_URL=mysql://root:{PW("Sup3r-s3cret-DB")}@db.internal:3306/app
NEXT_TELEMETRY_DISABLED=1
""")
    rec("config", f"""
# inventory/prod.ini
[db]
db-01 ansible_host={IP("2001:db8:10::21")} ansible_user=deploy ansible_become_password={PW("Gr@nite-Peak-77")}
db-02 ansible_host={IP("192.0.2.62")} ansible_user=deploy

[db:vars]
ansible_ssh_private_key_file=~/.ssh/deploy_ed25519
postgres_version=16
""")
    rec("config", f"""
$ cat ~/.ssh/config
Host bastion
  HostName {IP("203.0.113.25")}
  User jump
  IdentityFile ~/.ssh/id_ed25519
$ cat ~/.ssh/id_ed25519
{PK(pem_text("OPENSSH"))}
$ cat ~/.ssh/id_ed25519.pub
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{rs(43, B64)} deploy@build-07
""")
    rec("config", f"""
[Interface]
PrivateKey = {GS(b64(32))}
Address = {IP("10.66.0.2")}/32
DNS = {IP("10.66.0.1")}

[Peer]
PublicKey = {b64(32)}
Endpoint = {IP("198.51.100.77")}:51820
PersistentKeepalive = 25
""")
    rec("config", f"""
provider "aws" {{
  region     = "eu-west-2"
  access_key = "{AK(aws_ak())}"
  secret_key = "{SK(aws_sk())}"
}}

resource "aws_db_instance" "orders" {{
  identifier          = "orders-prod"
  engine              = "postgres"
  engine_version      = "16.3"
  instance_class      = "db.r6g.large"
  username            = "orders_admin"
  password            = "{PW("Zq4!mV8@kP2#")}"
  skip_final_snapshot = false
}}
""")


# =====================================================================================  forms
def forms():
    rec("form", f"""
NEW STARTER FORM — Section A: Personal details
Title: Ms     Surname: {P("Okonjo")}     Forename(s): {P("Adaeze Chioma")}
Date of birth: {DOB("11/06/1993")}          National Insurance number: {NINO(nino(True))}
Home address: {AD("72 Fernbank Road")}
              Sheffield
              S6 2RT
Personal email: {EM("adaeze.okonjo@example.com")}        Mobile: {PH("07700 900118")}
Emergency contact: {P("Chinedu Okonjo")} (brother), {PH("0114 496 0458")}
Student loan: Plan 2     Starter declaration: B
Signed: {P("A. C. Okonjo")}     Date: 12/08/2024
""")
    rec("form", f"""
MOTOR CLAIM NOTIFICATION                  Policy MTR-88412093 · Claim CLM-24-331908
Policyholder: Mr {P("Gareth Pugh")}         Date of birth: {DOB("02/09/1970")}       Tel: {PH("029 2018 0334")}
Address: {AD("5 Cwrt y Felin, Cardiff CF14 6QL")}
Driver at time of incident: {P("Bethan Pugh")} (named driver, spouse)
Vehicle: Skoda Octavia Estate, reg WX19 KLM, mileage 48,211
Third party: Mr {P("Imran Qureshi")}, vehicle reg YD68 PTO, insurer ref TP-44102
Incident: 14/05/2024 17:30, junction of Newport Road and City Road. Rear-ended while stationary at lights.
Injuries: driver reports {MC("whiplash")} ({MC("S13.4")}); attended Cardiff Royal Infirmary ED.
""")
    rows = []
    for name, dob, pc in [("Amelia Hartley", "1989-04-17", "LS6 2QT"), ("Kwabena Asante", "1992-11-03", "M14 5RL"),
                          ("Zofia Kamińska", "1985-07-29", "BS7 8LP"), ("Callum Fraser", "1990-12-19", "EH6 7JD")]:
        rows.append(f"E{R.randint(1000, 1999)},{P(name)},{DOB(dob)},{NINO(nino(False))},{pc},2021-06-07,{R.randint(30, 60)}000")
    rec("form", "employee_id,full_name,date_of_birth,ni_number,postcode,start_date,salary\n" + "\n".join(rows))
    rec("form", f"""
Form W-4 (2024) — Employee's Withholding Certificate (typed copy for HR file)
Step 1: Employee name: {P("Jordan T. Whitfield")}        Social security number: {SSN(ssn())}
        Address: {AD("905 Juniper Ridge Rd, Apt 12, Asheville, NC 28804")}
        Filing status: [x] Married filing jointly
Step 3: Claim dependents: $4,000
Employer: Blue Ridge Outfitters LLC, EIN 56-1234567, first date of employment 07/01/2024
""")
    rec("form", f"""
BOOKING CONFIRMATION — Ref HT-9QX4ZL
Lead guest: Mr {P("Henrik Larsen")}     Date of birth: {DOB("15/08/1979")}     Passport: {PP("208843117")} (DNK)
Guest 2: Mrs {P("Sofie Larsen")}          Passport: {PP("209117554")} (DNK)
Email: {EM("henrik.larsen@example.com")}     Phone: {PH("+45 20 12 34 56")}
Hotel: Casa Azul, {AD("Avenida da Liberdade 144, 1250-146 Lisboa")}
Check-in Fri 12 Jul 2024 (from 15:00) · Check-out Fri 19 Jul 2024 (by 11:00) · 7 nights · Room 2x Deluxe Double
Guarantee: Mastercard •••• 2291 · Total €2,184.00 incl. city tax
""")
    rec("form", f"""
MIETERSELBSTAUSKUNFT
Name, Vorname: {P("Schneider, Felix")}
Geburtsdatum: {DOB("23.01.1988")}
Derzeitige Anschrift: {AD("Friedrich-Ebert-Str. 112, 60327 Frankfurt am Main")}
Telefon: {PH("+49 69 4800 2291")}          E-Mail: {EM("felix.schneider@example.org")}
Arbeitgeber: Rheinblick Logistik GmbH, seit 03/2019, Nettoeinkommen 3.850 €
Reisepass-Nr.: {PP("C4J7R2MXN")}
Bankverbindung: {IB(mk_iban("DE"))}
Haustiere: nein   Raucher: nein
""")
    rec("form", f"""
FORMULARIO DE ALTA DE CLIENTE — PERSONA FÍSICA
Nombre y apellidos: {P("José Luis Ortega Sanz")}
Fecha de nacimiento: {DOB("02/11/1969")}
Domicilio: {AD("Calle Mayor 5, 50001 Zaragoza")}
Teléfono: {PH("+34 976 123 456")}        Correo: {EM("joseluis.ortega@example.com")}
Pasaporte: {PP("PAH772190")}
Cuenta para domiciliación: {IB(mk_iban("ES"))}
Profesión: arquitecto   ¿Persona con responsabilidad pública?: No
""")
    rec("form", f"""
HEALTH INSURANCE CLAIM FORM (typed)
1a. Insured's ID number: W2281934501
2.  Patient's name: {P("Alvarez, Sofia M")}
3.  Patient's birth date: {DOB("04/17/1990")}   Sex: F
5.  Patient's address: {AD("612 Harbor View Ct, Oxnard, CA 93035")}   Phone: {PH("(805) 555-0176")}
21. Diagnosis or nature of illness: A. {MC("J02.9")}   B. {MC("R50.9")}
24. Dates of service 05/02/2024 · CPT 99213 · Charges $145.00
24J. Rendering provider NPI: 1245319599
25. Federal tax ID: 95-4417203
""")
    rec("form", f"""
Lidmaatschapsformulier — FitHub Utrecht
Naam: {P("Sanne de Vries")}
Geboortedatum: {DOB("09-03-1998")}
Adres: {AD("Oudegracht 231, 3511 NK Utrecht")}
E-mail: {EM("sanne.devries@example.com")}     Telefoon: {PH("06 12345678")}
Machtiging SEPA-incasso — Incassant ID: NL98ZZZ999999999999, kenmerk machtiging FH-004471
IBAN: {IB(mk_iban("NL"))}
Abonnement: Flex 12 maanden, € 34,95 per maand
""")
    rec("form", f"""
Pupil admission form — Oakfield Primary
Pupil: {P("Noah Fitzgerald")}    Date of birth: {DOB("02/03/2017")}    Year group: 2
Parent/carer 1: {P("Claire Fitzgerald")}, {PH("07700 900774")}, {EM("claire.fitz@example.com")}
Parent/carer 2: {P("Declan Fitzgerald")}, {PH("07700 900775")}
Home address: {AD("13 Linnet Close, Basingstoke RG22 5NJ")}
Medical needs: severe {MC("peanut allergy")} (adrenaline auto-injector kept in office); {MC("asthma")} (blue inhaler in bag)
GP: Dr {P("R. Banerjee")}, Chineham Surgery
""")
    rec("form", f"""
KWESTIONARIUSZ OSOBOWY DLA PRACOWNIKA
1. Imię (imiona) i nazwisko: {P("Agnieszka Maria Wróblewska")}
2. Data urodzenia: {DOB("27.05.1990")}
3. Adres zamieszkania: {AD("ul. Marszałkowska 102 m. 15, 00-017 Warszawa")}
4. Dane kontaktowe: tel. {PH("+48 601 234 567")}, e-mail {EM("a.wroblewska@example.org")}
5. Numer rachunku bankowego do wypłaty wynagrodzenia: {IB(mk_iban("PL"))}
6. Wykształcenie: wyższe, Politechnika Warszawska, 2014
""")
    rec("form", f"""
Visitor visa application — summary page
Applicant: {P("Tendai Moyo")}
Passport number: {PP("DN0938812")}     Issued: Harare, 14/02/2022     Expires: 13/02/2032
Nationality: Zimbabwean     Date of birth: {DOB("1987-10-05")}
Address while in the UK: {AD("204 Hollins Lane, Bury BL9 8DG")}
Sponsor: {P("Rutendo Chikwanha")} (sister), {PH("0161 496 0219")}
Email: {EM("tendai.moyo@example.com")}     Previous refusals: none
""")
    lines = ['"Customer","Email","Phone","Street","City","State","ZIP","Card last 4"']
    for name, em, ph, st, city, stt, z in [
            ("Hannah Schultz", "hschultz@example.com", "(312) 555-0182", "4410 N Ravenswood Ave", "Chicago", "IL", "60640"),
            ("Miguel Ángel Torres", "mtorres@example.net", "(210) 555-0114", "918 Mission Hills Dr", "San Antonio", "TX", "78213"),
            ("Keisha Franklin", "keisha.f@example.org", "(404) 555-0139", "77 Peachtree Pl NE", "Atlanta", "GA", "30309")]:
        lines.append(f'"{P(name)}","{EM(em)}","{PH(ph)}","{AD(st)}","{city}","{stt}","{z}","{rs(4, DIG)}"')
    rec("form", "\n".join(lines))
    rec("form", f"""
LIFE COVER APPLICATION — Part C: Health questionnaire
Applicant: {P("Deborah Klein")}     Date of birth: {DOB("30/06/1968")}     Application no. LIF-7712034
Have you ever been diagnosed with or treated for:
  (a) heart disease or stroke?                 NO
  (b) cancer, leukaemia or any tumour?         YES — {MC("breast cancer")} ({MC("C50.9")}), 2016, lumpectomy + radiotherapy, in remission
  (c) diabetes?                                NO
  (d) any mental health condition?             NO
Current medication: letrozole 2.5 mg daily
""")
    rec("form", f"""
IRS Form W-7 — worksheet (preparer copy)
Applicant: {P("Alejandra Ruiz Ortiz")}
Reason: (h) other — nonresident alien with U.S. rental income
Mailing address: {AD("2810 S Kedzie Ave, Chicago, IL 60623")}
Date of birth: {DOB("08/14/1986")}   Country of birth: Mexico
Passport: {PP("G41807752")} (MEX)
ITIN assigned (per CP565 notice): {ITIN(itin())}
""")


# =====================================================================================  email
def emails():
    rec("email", f"""
From: {P("Hannah Okoye")} <{EM("hannah.okoye@talentbridge.example")}>
To: {P("Stefan Wójcik")} <{EM("s.wojcik@example.com")}>
Date: Tue, 4 Jun 2024 09:12:33 +0100
Subject: Re: Next steps — Senior Data Engineer

Thanks, that's everything I need for the background check. I'll submit it today.

> On 4 Jun 2024, at 08:47, {P("Stefan Wójcik")} wrote:
> Full name as on passport: {P("Stefan Piotr Wójcik")}
> Date of birth: {DOB("18 April 1990")}
> Current address: {AD("3 Crown Yard, Hebden Bridge HX7 8AD")}
> NI number: {NINO(nino(True))}
""")
    rec("email", f"""
De : {P("Anne-Sophie Dubois")} <{EM("as.dubois@example.org")}>
À : comptabilite@cabinet-lemaire.example
Objet : Changement de coordonnées bancaires

Bonjour Madame {P("Lemaire")},

Suite à mon changement de banque, merci de noter mes nouvelles coordonnées pour le prélèvement des honoraires :
IBAN : {IB(mk_iban("FR"))}
BIC : {BIC("CCBPFRPPMTG")}
Ma nouvelle adresse : {AD("3 bis avenue Jean-Jaurès, 69007 Lyon")}

Cordialement,
{P("Anne-Sophie Dubois")}
{PH("06 39 98 41 27")}
""".replace("comptabilite@cabinet-lemaire.example", EM("comptabilite@cabinet-lemaire.example")))
    rec("email", f"""
From: Dr {P("Rachel Whitcombe")} <{EM("rachel.whitcombe@nhs.example")}>
To: Haematology Secretaries <{EM("haem.secretaries@nhs.example")}>
Subject: URGENT — please book 2WW, NHS {NHS(nhs(" "))}

Please book this lady into the next two-week-wait slot: Mrs {P("Patricia Holloway")}, DOB {DOB("11/11/1949")}, MRN {MRN("W0034471")}.
FBC: Hb 78 g/L, MCV 69, ferritin 6. {MC("Iron deficiency anaemia")} ({MC("D50.9")}) on a background of {MC("pernicious anaemia")} ({MC("D51.0")}). No PR bleeding reported.
Thanks, RW
""")
    rec("email", f"""
From: IT Service Desk <{EM("servicedesk@example.com")}>
To: {P("Kofi Mensah")} <{EM("kofi.mensah@example.com")}>
Subject: Your new account is ready

Hello,

Your account has been created.
Username: kmensah
Temporary password: {PW("Velvet-Lantern-93")}

You will be asked to change it at first sign-in. Please enrol MFA within 24 hours at https://mfa.example.com.

IT Service Desk · ext. 4400
""")
    rec("email", f"""
Von: {P("Sophie Vogel")} <{EM("sophie.vogel@example.org")}>
An: Reisebüro Sonnenschein <{EM("info@sonnenschein-reisen.example")}>
Betreff: Passdaten für Buchung 24-7781

Hallo Frau {P("Albrecht")},

anbei wie besprochen die Passdaten für die eTA-Anträge (Kanada):
{P("Sophie Vogel")}, Reisepassnummer {PP("CF1J9GT3M")}, geboren am {DOB("19.12.1985")} in Heidelberg
Mein Mann: {P("Markus Vogel")}, Reisepassnummer {PP("C7HNR4K2P")}, geboren am {DOB("03.08.1983")}

Viele Grüße
{P("S. Vogel")}
""")
    rec("email", f"""
From: {P("Eleanor Finch")} <{EM("e.finch@finchcowell.example")}>
To: {P("Colin Ashby")} <{EM("colin.ashby@example.net")}>
Subject: Completion statement — {AD("27 Coppergate Mews, York YO1 9XQ")}

Dear Mr {P("Ashby")},

Please find the completion statement attached. The balance due from you is £48,215.60, payable by 12 noon on Friday to our client account:

Account name: Finch & Cowell LLP Client Account
IBAN: {IB(mk_iban("GB"))}     BIC: {BIC("BARCGB22")}

Before sending any money, please telephone me on {PH("0113 496 0991")} to confirm these details. We will never change our bank details by email.

Kind regards,
{P("Eleanor Finch")}, Partner
""")
    rec("email", f"""
Subject: Re: 403 on /v2/reports
From: {P("Yara Haddad")} <{EM("yara.haddad@example.com")}>

Still getting 403. Copied from devtools:

GET /v2/reports?from=2024-01-01&to=2024-03-31 HTTP/2
Host: api.example.com
authorization: Bearer {JW(jwt({"sub": "u_48213", "org": "o_771", "roles": ["analyst"], "iat": 1714550400, "exp": 1714554000}, "ES256"))}
x-request-id: {uuid4()}
user-agent: Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4_1)
""")
    rec("email", f"""
Asunto: Factura F-2024-0381 — Talleres Herrero
Estimado Sr. {P("Delgado")}:

Le adjuntamos la factura F-2024-0381 por la reparación del vehículo 4471-KLM (1.284,30 € IVA incluido).
Forma de pago: transferencia a la cuenta {IB(mk_iban("ES"))} (BIC {BIC("CAIXESBBXXX")}), indicando el número de factura.

Un saludo,
{P("Lucía Herrero")}
Administración — Talleres Herrero S.L.
Tel. {PH("+34 91 123 45 67")}
""")
    rec("email", f"""
From: {P("Jonah Feld")} <{EM("jonah.feld@example.org")}>
To: newsletter-admin@example.com
Subject: signup for two people

Hi, to keep the scrapers away I'm writing the addresses like this: my sister's is {EM("rivka dot feld at example dot net")} and mine for the newsletter is {EM("jfeld[at]example[dot]org")}.
Thanks!
""".replace("newsletter-admin@example.com", EM("newsletter-admin@example.com")))
    rec("email", f"""
From: Payroll <{EM("payroll@example.com")}>
To: Benefits Team <{EM("benefits@example.com")}>
Subject: W-2c needed — wrong taxpayer IDs

Two 2023 W-2s went out with the wrong taxpayer ID:
  - {P("Alejandro Ruiz")}: correct ITIN is {ITIN(itin())}
  - {P("Kenji Watanabe")}: correct SSN is {SSN(ssn())}
Please issue W-2c forms and mail them to the addresses on file. Do not email the corrected forms.
""")
    rec("email", f"""
From: {P("Olivia Grant")} <{EM("olivia.grant@example.com")}>
Sent: Thursday, 6 June 2024 16:41
To: {P("Samir Haddad")} <{EM("samir.haddad@example.net")}>
Cc: Ops <{EM("ops@example.com")}>
Subject: RE: Site visit — Unit 7

Thursday at 10 works. Parking is at the back of the building; the code for the barrier is 4471#.

{P("Olivia Grant")} | Facilities Manager
Northgate Business Park, {AD("7 Foundry Lane, Salford M5 4WT")}
T: {PH("0161 496 0733")} | M: {PH("07700 900392")}
""")
    rec("email", f"""
From: {EM("devops@example.com")}
To: {P("Stelian Popescu")} <{EM("stelian.popescu@contractor.example")}>
Subject: access for the mirror job

Hi,
Here is a fine-grained token for the mirror job (read-only on acme-labs/docs): {GH(gh_pat())}
And the Slack webhook for the #docs-builds channel: {SL(slack_hook())}
Both expire on 30 Sept. Please don't commit them.
""")
    amex = card("3782", 15)
    rec("email", f"""
Dear Reservations team,

Please guarantee booking 551902 (arriving 22 September, 3 nights) for Mr and Mrs {P("Haruto Sato")} with the card below:
American Express {CC(grp(amex, [4, 6, 5]))}, expiry 04/27, cardholder {P("Haruto Sato")}.
He can be reached on {PH("+81 90 1234 5678")} during the trip.

Best regards,
{P("Emily Turner")}
Executive Assistant
""")
    rec("email", f"""
From: {P("Lars Eriksen")} <{EM("lars.eriksen@example.com")}>
To: security@example.com
Subject: I think I leaked a key

I pushed a branch with our staging merchant key and the signing key for webhooks by accident. The files were:
config/stripe.env: STRIPE_KEY={ST(stripe("sk_live_", 24))}
config/webhook-signing.pem:
{PK(pem_text("PKCS8"))}
The branch is deleted now but it was public for about 20 minutes.
""".replace("security@example.com", EM("security@example.com")))
    rec("email", f"""
From: {P("Nadia Petrova")} <{EM("nadia.petrova@example.org")}>
To: {P("Tomás Ó Briain")} <{EM("tomas.obriain@example.net")}>
Subject: refund of the festival tickets

Hi,
Send your half (€95) whenever — either to my IBAN {IB(mk_iban("IE"))} or in crypto if easier: {W(eth())}
N.
""")


# =====================================================================================  finance
def finance():
    c = card("4658", 16)
    rec("finance", f"""
Mrs {P("Deborah Ashcroft")}
{AD("31 Willow Crescent")}
Harrogate
HG2 8NP

Customer Disputes Team
Northern Counties Bank plc
PO Box 4471, Leeds LS1 9ZZ

12 June 2024

Dear Sir or Madam,

Re: disputed transactions — card number {CC(grp(c, [4, 4, 4, 4]))}

I am writing to dispute three transactions totalling £1,874.97 that appear on my statement dated 3 June 2024. I did not make or authorise them, and the card has been in my possession throughout:

  28/05/2024  TRAVELBOOK*EU 0047718223      £1,204.50
  29/05/2024  TRAVELBOOK*EU 0047718391        £459.99
  29/05/2024  GIFTCARDS-ONLINE REF 88123      £210.48

Please treat this as a claim under section 75 of the Consumer Credit Act 1974 and refund the amounts while you investigate. I can be reached on {PH("07700 900615")}.

Yours faithfully,
{P("Deborah Ashcroft")}
""")
    rec("finance", f"""
<CdtTrfTxInf>
  <PmtId><EndToEndId>INV-2024-0615-001</EndToEndId></PmtId>
  <Amt><InstdAmt Ccy="EUR">2450.00</InstdAmt></Amt>
  <CdtrAgt><FinInstnId><BICFI>{BIC("BCITITMM")}</BICFI></FinInstnId></CdtrAgt>
  <Cdtr><Nm>{P("Marco Bianchi")}</Nm></Cdtr>
  <CdtrAcct><Id><IBAN>{IB(mk_iban("IT", False))}</IBAN></Id></CdtrAcct>
  <RmtInf><Ustrd>Fattura 2024/118 consulenza</Ustrd></RmtInf>
</CdtTrfTxInf>
<CdtTrfTxInf>
  <PmtId><EndToEndId>INV-2024-0615-002</EndToEndId></PmtId>
  <Amt><InstdAmt Ccy="EUR">780.50</InstdAmt></Amt>
  <CdtrAgt><FinInstnId><BICFI>{BIC("GENODEM1GLS")}</BICFI></FinInstnId></CdtrAgt>
  <Cdtr><Nm>{P("Greta Lindner")}</Nm></Cdtr>
  <CdtrAcct><Id><IBAN>{IB(mk_iban("DE", False))}</IBAN></Id></CdtrAcct>
  <RmtInf><Ustrd>Rechnung 0047 Übersetzung</Ustrd></RmtInf>
</CdtTrfTxInf>
""")
    rows = [f"PersNr;Name;IBAN;BIC;Netto"]
    for pn, name, cc, bic, net in [(10041, "Fischer, Lena", "DE", "DEUTDEDBHAM", "3.412,55"),
                                   (10042, "Yılmaz, Mehmet", "DE", "HASPDEHHXXX", "2.980,10"),
                                   (10043, "Novak, Tereza", "AT", "BKAUATWW", "3.105,00")]:
        rows.append(f"{pn};{P(name)};{IB(mk_iban(cc, False))};{BIC(bic)};{net}")
    rec("finance", "\n".join(rows))
    rec("finance", f"""
FAKTURA VAT nr FV/2024/06/118                         Data wystawienia: 14.06.2024
Sprzedawca: Studio Graficzne Pixelowo Sp. z o.o., {AD("ul. Piotrkowska 120, 90-006 Łódź")}, NIP 725-184-49-22
Nabywca: {P("Tomasz Zieliński")}, {AD("ul. Lipowa 8/3, 20-020 Lublin")}
Lp. Nazwa                          Ilość  Cena netto  VAT   Wartość brutto
1.  Projekt identyfikacji wizualnej  1     4 000,00   23%   4 920,00
Do zapłaty: 4 920,00 PLN
Numer rachunku: {IB(mk_iban("PL"))}
Termin płatności: 14 dni
""")
    mc = card("5412", 16)
    rec("finance", f"""
{{"event":"dispute.created","id":"dp_1PF3kQ2eZvKYlo2C8x0aRt3n","reason":"fraudulent","amount":18999,"currency":"gbp","card":{{"brand":"mastercard","number":"{CC(mc)}","exp":"08/27"}},"cardholder":"{P("Niamh Brennan")}","billing":{{"line1":"{AD("19 Larkfield Grove")}","city":"Galway","postcode":"H91 X2F3"}},"ip":"{IP("203.0.113.188")}","created":1718263771}}
""")
    rec("finance", f"""
:20:REF240612-0093
:23B:CRED
:32A:240612EUR18500,00
:50K:/{IB(mk_iban("GB", False))}
{P("ALISTAIR CRANE")}
{AD("14 HAWTHORN DRIVE")}
ABERDEEN AB15 6LT
:52A:{BIC("BARCGB22")}
:57A:{BIC("DEUTDEFF")}
:59:/{IB(mk_iban("DE", False))}
{P("KLARA SCHMIDT")}
{AD("HAUPTSTRASSE 9")}
79098 FREIBURG
:70:INVOICE 2024-118
:71A:SHA
""")
    rec("finance", f"""
INVOICE CX-2024-0042                      Issued 2024-06-01 · Due 2024-06-15
Bill to: Nordlys Games AS, attn. accounts payable
Description: Smart-contract audit, phase 1 (40 h)
Amount due: 0.0185 BTC or 1,250.00 USDC

Pay BTC (Taproot) to:  {W(btc_tr())}
Pay USDC (Ethereum mainnet, ERC-20) to:  {W(eth().lower())}
Older wallets without bc1 support:  {W(btc_p2sh())}

Please include memo 7781. Invoice hash (sha256): {hexs(64)}
""")
    rec("finance", f"""
UNIFORM RESIDENTIAL LOAN APPLICATION — summary
Borrower: {P("Thomas A. Reilly")}      SSN: {SSN(ssn())}      DOB: {DOB("05/22/1981")}
Co-borrower: {P("Megan Reilly")}         SSN: {SSN(ssn())}      DOB: {DOB("11/30/1983")}
Present address: {AD("1402 W Addison St, Unit 3F, Chicago, IL 60613")}
Subject property: {AD("77 Birchwood Lane, Naperville, IL 60540")}
Loan amount: $412,000    LTV: 80%    Loan # 3300-1877-19    Rate lock: 6.375% to 08/30/2024
""")
    nc = card("4539", 16)
    rec("finance", f"""
Dear {P("Gary Whitlock")},

Your replacement Platinum card is enclosed. Your new card number is {CC(grp(nc, [4, 4, 4, 4]))} and it expires 07/29. Your old card ending 8842 has been cancelled and will no longer work.
Activate your card at example.com/activate or call {PH("0161 496 0099")}.
""")
    rec("finance", f"""
SEPA-Überweisung (Ausführung 01.07.2024)
Auftraggeber: {P("Heinrich Albers")}, IBAN {IB(mk_iban("DE"))}
Empfänger: Hausverwaltung Krämer GmbH
IBAN: {IB(mk_iban("DE"))}
BIC: {BIC("GENODEF1S02")}
Betrag: 1.240,00 EUR
Verwendungszweck: Miete Juli 2024, {AD("Wittelsbacherstr. 14, 80469 München")}, 3. OG links
""")
    amx = card("3759", 15)
    rec("finance", f"""
Expense claim EXP-0419 — {P("Rafael Costa")} (Sales, Iberia)
Corporate card: {CC(amx)}
Date        Merchant                      Category    Amount
2024-06-03  Hotel Marquês, Lisboa         Lodging     €412.00
2024-06-04  Uber *Trip                    Transport   €18.40
2024-06-04  Cervejaria Ramiro             Meals       €96.75 (client: 3 pax)
Approver: {P("Inês Carvalho")}     Cost centre: IB-SALES-02
""")
    rec("finance", f"""
LOAN AGREEMENT (excerpt)
This Agreement is made on June 10, 2024 between Sunrise Community Credit Union ("Lender") and {P("Guadalupe Herrera")} ("Borrower"), taxpayer identification number (ITIN) {ITIN(itin())}, residing at {AD("1745 E Cesar Chavez St, Austin, TX 78702")}.
1. Principal. Lender agrees to lend Borrower $8,500.00 at a fixed annual rate of 9.99%.
""")
    rec("finance", f"""
Vendor master change request VMR-2024-0611   Status: ON HOLD (possible BEC)
Vendor: Harlow Packaging Ltd (V-00418)
Requested by "{P("Andrew Harlow")}" from {EM("a.harlow@harlow-packaging.example.net")} (domain registered 3 days ago)
Current bank details: {IB(mk_iban("GB"))}
Requested new details: {IB(mk_iban("GB"))}, BIC {BIC("LOYDGB2L")}
Call-back to number on file ({PH("020 7946 0158")}): NOT DONE — do not release payment run 24-W25
""")
    rec("finance", f"""
CLIENT ONBOARDING — Individual (private banking)
Full legal name: {P("Rafael Augusto Costa")}
Date of birth: {DOB("21/02/1977")}    Nationality: Portuguese
Passport: {PP("CB448120")}, issued 2021, expires 2026
Residential address: {AD("Rua do Alecrim 47, 1200-015 Lisboa")}
Source of wealth: sale of business (2022), documented
Settlement account: {IB(mk_iban("PT"))}   Custody BIC: {BIC("BCOMPTPL")}
Email: {EM("rafael.costa@example.com")}   Mobile: {PH("+351 912 345 678")}
""")
    rec("finance", f"""
2024-06-12 14:22:07.118 INFO  gateway.charge  merchant=acct_1MqT8xKk2 amount=4999 currency=EUR card=****1111 3ds=frictionless
2024-06-12 14:22:07.302 WARN  gateway.auth    retrying with fallback key {ST(stripe("sk_live_", 24))} after 401 from primary
2024-06-12 14:22:07.545 INFO  gateway.charge  charge=ch_3PQm2sKk2a9x status=succeeded risk_score=12
""")


# =====================================================================================  more positives (secrets, ITIN, NHS)
def extras():
    rec("support_ticket", f"""
PROJ-7731 · Maps widget blank on the store locator
Reporter: {P("Ewan McLeod")}   Component: web-storefront   Affects: 5.2.0

Console shows "RefererNotAllowedMapError". Key currently in the bundle: {GK(gkey())}
The chat assistant on the same page also errors; its key is hard-coded in assistant.config.js as {OA(oa_legacy())}
Both keys should come from the server, not the bundle. Needs a fix before the summer sale.
""")
    rec("support_ticket", f"""
Tax Prep Online — Support request #TP-58120
Customer: {P("Rosa Quintero")} (Premium plan)
Issue: e-file rejected, reject code IND-031-04 (prior-year AGI mismatch).
Taxpayer ITIN: {ITIN(itin())}    Spouse SSN: {SSN(ssn())}
Spouse: {P("Hector Quintero")}
Callback: {PH("(915) 555-0127")}, after 5 pm MT.
""")
    rec("support_ticket", f"""
OPS-1182 — decode error in the webhook consumer
Attached: one failing event (as received). The Authorization header was:
Bearer {JW(jwt({"iss": "https://events.example.com", "sub": "wh_48812", "aud": "consumer", "iat": 1717430400, "exp": 1717434000, "jti": uuid4()}, "HS512"))}
The consumer also logged the Stripe restricted key it was configured with: {ST(stripe("rk_live_", 24))}
Assigned to: {P("Mateusz Kaczmarek")}
""")
    sftp = pem_text("RSA")
    rec("support_ticket", f"""
Bank connectivity — request 4471 (host-to-host statements)
From: treasury ops
We generated the SFTP key pair for the new statement feed. Pasting the private half here so the bank's onboarding team can "test the connection" (their request):

{PK(sftp)}

Public key fingerprint SHA256:{b64(32).rstrip("=")}. Please confirm when whitelisted from {IP("198.51.100.61")}.
Also: the GitHub Actions job that uploads statements uses {GH(gh("gho_"))}; and the Slack app posts with {SL(slack_app())}.
""")
    rec("chat_log", f"""
Direct message — {P("Connor Walsh")} → {P("Yuki Tanaka")}
{P("Connor Walsh")} 16:02: here are the creds for the demo AWS account, don't share pls
{P("Connor Walsh")} 16:02: {AK(aws_ak())}
{P("Connor Walsh")} 16:02: {SK(aws_sk())}
{P("Yuki Tanaka")} 16:05: thanks. also need the twilio auth token for the SMS demo
{P("Connor Walsh")} 16:06: TWILIO_AUTH_TOKEN={GS(hexs(32))}
{P("Yuki Tanaka")} 16:07: and I'll use my own PAT for the repo: {GH(gh_pat())}
""")
    rec("chat_log", f"""
[SMS] Casa Tax Services
Casa Tax: Hola {P("Guadalupe")}, para la declaración necesitamos el número ITIN de su esposo.
{P("Guadalupe")}: es {ITIN(itin(" "))}
Casa Tax: Gracias. ¿Y el suyo sigue siendo el mismo?
{P("Guadalupe")}: sí, el de siempre
""")
    rec("chat_log", f"""
#frontend
{P("Jakub Nowak")} 10:11: anyone seen this? localStorage has `auth` = {JW(jwt({"sub": "u_10442", "email_verified": True, "iat": 1718001000, "exp": 1718004600}))}
{P("Jakub Nowak")} 10:11: and the places autocomplete key is {GK(gkey())}
{P("Chiara Rossi")} 10:13: don't paste tokens in channels 🙈 — the Places key is also restricted by referrer so not the end of the world
{P("Chiara Rossi")} 10:14: btw xoxp for the deploy notifier, the old one expired: {SL(slack_user())}
""")
    rec("chat_log", f"""
#ai-guild
{P("Sunita Rao")}: the batch job died at 03:00 with "insufficient_quota"
{P("Sunita Rao")}: it's using {OA(oa_proj())}
{P("Marek Dvořák")}: that's the personal trial key, we moved to the org key months ago
""")
    nhs_a, nhs_b = nhs(None), nhs(" ")
    rec("code", f"""
# tests/test_nhs_lookup.py
import pytest

VALID = ["{NHS(nhs_a)}", "{NHS(nhs_b)}"]
INVALID = ["{bad_nhs("")}", "123 456 7890"]

@pytest.mark.parametrize("n", VALID)
def test_valid(n):
    assert is_valid_nhs(n)

def test_patient_fixture():
    p = Patient(name="{P("Evie Sinclair")}", nhs="{NHS(nhs(" "))}", itin=None)
    assert p.nhs_valid
""")
    rec("code", f"""
# notebooks/summarise.ipynb — cell 3
import openai, googlemaps
client = openai.OpenAI(api_key="{OA(oa_proj())}")
gmaps = googlemaps.Client(key="{GK(gkey())}")
for row in df.itertuples():
    loc = gmaps.geocode(row.postcode)
""")
    rec("code", f"""
func TestParseTaxID(t *testing.T) {{
	cases := map[string]Kind{{
		"{ITIN(itin())}": KindITIN,
		"{SSN(ssn())}": KindSSN,
		"12-3456789":  KindEIN,
	}}
	for in, want := range cases {{
		if got := ParseTaxID(in); got != want {{
			t.Errorf("%s: got %v want %v", in, got, want)
		}}
	}}
	tok := "{JW(jwt({"sub": "test-user", "tenant": "t1", "iat": 1700000000}))}"
	if _, err := VerifyJWT(tok, testSecret); err != nil {{
		t.Fatal(err)
	}}
}}
""")
    rec("config", f"""
{{
  "project_info": {{
    "project_number": "{rs(12, DIG)}",
    "project_id": "rider-app-prod",
    "storage_bucket": "rider-app-prod.appspot.com"
  }},
  "client": [{{
    "client_info": {{ "mobilesdk_app_id": "1:{rs(12, DIG)}:android:{hexs(22)}", "android_client_info": {{ "package_name": "com.example.rider" }} }},
    "api_key": [{{ "current_key": "{GK(gkey())}" }}]
  }}],
  "configuration_version": "1"
}}
""")
    rec("config", f"""
# docker-compose.rag.yml
services:
  rag:
    image: ghcr.io/acme-labs/rag-api:0.4.1
    environment:
      OPENAI_API_KEY: "{OA(oa_legacy())}"
      VECTOR_DB_URL: "http://{IP("10.30.2.14")}:6333"
      ADMIN_PASSWORD: "{PW("lantern-Cobalt-58")}"
""")
    rec("email", f"""
From: {P("Graham Whitley")} <{EM("graham.whitley@example.com")}>
To: {P("Priscila Andrade")} <{EM("priscila@andrade-consulting.example")}>
Subject: access for the migration

Hi Priscila,

As discussed, keys for the migration account (please use only from your office IP):
Access key ID: {AK(aws_ak())}
Secret access key: {SK(aws_sk())}
The OpenAI key for the classification step: {OA(oa_legacy())}
And the SendGrid key for test mails: {GS("SG." + rs(22, B64U) + "." + rs(43, B64U))}

Thanks,
Graham
""".replace("Hi Priscila,", "Hi,").replace("Thanks,\nGraham", "Thanks,\nGW"))
    rec("email", f"""
From: {EM("noreply@billing.example.com")}
To: {P("Ana Lima")} <{EM("ana.lima@example.org")}>
Subject: [action required] your API integration

Our logs show your server sending requests with this key in the query string:
  ?key={ST(stripe("sk_live_", 99))}
Query strings are logged by proxies. Roll the key in the dashboard and send it in the Authorization header instead.
Also rotate the Maps key that appears in the same URL: {GK(gkey())}
""")
    rec("form", f"""
GMS1 — Family Doctor Services Registration (typed copy)
Surname: Sinclair    First names: Evie Rose    Previous surname: —
Date of birth: {DOB("14/09/2001")}    NHS number: {NHS(nhs(" "))}
Home address: {AD("11 Tolbooth Wynd, Leith EH6 6JA")}
Previous GP: Dr {P("Iain Cormack")}, Marchmont Medical Practice
Contact: {PH("0131 496 0288")}
""".replace("Surname: Sinclair    First names: Evie Rose", "Name: " + P("Evie Rose Sinclair")))
    rec("form", f"""
Client intake — 2023 federal return (married filing jointly)
Taxpayer: {P("Aurelio Bautista")}    ITIN {ITIN(itin())}    DOB {DOB("03/02/1982")}
Spouse: {P("Marisol Bautista")}     ITIN {ITIN(itin())}    DOB {DOB("12/17/1985")}
Dependent: {P("Daniel Bautista")} (son), SSN {SSN(ssn())}, DOB {DOB("05/09/2014")}
Address: {AD("4117 Calle Verde, El Paso, TX 79936")}
Refund by direct deposit — routing 111000025, account ****4471
""")
    rec("finance", f"""
2024-06-14T09:01:22Z webhook payment_intent.succeeded id=evt_3PRb2KkLm0 amount=12900 currency=usd
2024-06-14T09:01:22Z verifying with signing secret {GS("whsec_" + rs(32))}
2024-06-14T09:01:22Z forwarding to ledger with service token {JW(jwt({"iss": "payments", "sub": "ledger-writer", "iat": 1718355682, "exp": 1718356582}))}
2024-06-14T09:01:23Z ledger ack txn=LDG-2024-0614-00091 in 212 ms
""")
    rec("finance", f"""
Host-to-host onboarding checklist — Northern Counties Bank
1. Client SFTP user: acme_h2h
2. Client signing key (PKCS#1, generated 2024-06-10 by {P("Olamide Bello")}):
{PK(pem_text("RSA"))}
3. Bank's public key fingerprint: SHA256:{b64(32).rstrip("=")}
4. Stripe payouts reconcile against this feed with key {ST(stripe("sk_live_", 24))}
""")


# =====================================================================================  hard negatives
def negatives():
    rows = ["order_id,placed_at,sku,qty,unit_price,status"]
    for i in range(5):
        rows.append(f"{not_luhn(R.choice(['4', '5', '37', '6011']), 16)},2024-06-{10 + i:02d}T0{i}:1{i}:00Z,SKU-{rs(4, DIG)}-{rs(2, UP)},{i + 1},{R.randint(5, 99)}.{R.randint(0, 99):02d},"
                    + R.choice(["SHIPPED", "DELIVERY", "REFUNDED", "CUSTOMER HOLD"]))
    neg("\n".join(rows))
    neg(f"""
Your parcels
  Royal Mail Tracked 48: JD{rs(16, DIG)}GB — out for delivery
  UPS: 1Z{rs(6, UP + DIG)}{rs(10, DIG)} — in transit, Kettering hub
  DHL Express waybill: {rs(10, DIG)} — customs cleared 14:02
  Evri: H0{rs(14, DIG)} — delivered to safe place (porch)
Need help? Quote your order number 204-{rs(7, DIG)}-{rs(7, DIG)} when you contact us.
""")
    neg(f"""
Further reading
- Kleppmann, M. Designing Data-Intensive Applications. O'Reilly, 2017. ISBN {isbn13()}.
- Gamma, E. et al. Design Patterns. Addison-Wesley, 1994. ISBN {isbn10()}.
- Petzold, C. Code: The Hidden Language. 2nd ed., 2022. ISBN-13: {isbn13('979')}
- Library call number QA76.9.D3 K54 2017; OCLC 958470215
""")
    neg(f"""
2024-06-12T08:14:55.120Z INFO  request_id={uuid4()} trace_id={hexs(32)} span_id={hexs(16)} route=/api/v1/catalog status=200 dur_ms=41
2024-06-12T08:14:55.388Z INFO  request_id={uuid4()} trace_id={hexs(32)} span_id={hexs(16)} route=/api/v1/cart status=200 dur_ms=12
2024-06-12T08:14:56.002Z WARN  request_id={uuid4()} cache miss ratio 0.43 over 5m window (threshold 0.40)
""")
    shas = [hexs(40) for _ in range(4)]
    neg(f"""
commit {shas[0]} (HEAD -> main, tag: v2.8.0, origin/main)
Merge: {shas[1][:7]} {shas[2][:7]}
Author: github-actions[bot]
Date:   Tue Jun 11 09:30:12 2024 +0000

    Merge pull request #4471 from acme-labs/deps/bump-tokio

    Bump tokio from 1.37.0 to 1.38.0; cargo update -p serde (1.0.201 -> 1.0.203)

commit {shas[3]}
    ci: pin actions/cache to v4.0.2
""")
    neg(f"""
"node_modules/@babel/core": {{
  "version": "7.24.7",
  "resolved": "https://registry.npmjs.org/@babel/core/-/core-7.24.7.tgz",
  "integrity": "sha512-{b64(64)}",
  "dev": true,
  "engines": {{ "node": ">=6.9.0" }}
}},
"node_modules/semver": {{ "version": "6.3.1", "integrity": "sha512-{b64(64)}" }}
""")
    neg(f"""
Test vectors for the IBAN validator (all of these must be REJECTED):
  {bad_iban("GB")}   wrong check digits
  {bad_iban("DE", False)}     wrong check digits
  {bad_iban("FR")}   wrong check digits
  NL91 ABNA 0417 1643   too short for NL
  XX12 3456 7890 1234 5678   unknown country code
""")
    neg("""
Synthetic SSN edge cases used by the form validator (every one of these is invalid by rule):
  000-12-3456  area 000 is never issued
  666-41-2290  area 666 is never issued
  912-34-5678  9xx areas are not SSNs, and group 34 is not an ITIN group either
  219-00-4471  group 00 is never issued
  318-62-0000  serial 0000 is never issued
""")
    neg("""
# AWS documentation example — these are the placeholder credentials from the AWS CLI guide
[default]
aws_access_key_id = AKIAIOSFODNN7EXAMPLE
aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
""")
    neg(f"""
Build 2024.06.12 — release notes
Timestamps (UTC): 2024-06-12T09:41:07Z, 2024-06-12 09:41:07.123456, 1718185267, 1718185267123
Epoch day 19886; ISO week 2024-W24; cron "*/15 6-22 * * 1-5"
Uptime 41d 07:12:33; p99 latency 212 ms; error rate 0.031%
""")
    neg("""
:root {
  --brand-primary: #1a73e8;
  --brand-accent: #ff6f00;
  --surface: #fafafa;
  --text-muted: rgba(32, 33, 36, 0.64);
  --focus-ring: #7700ff;
}
.btn-primary:hover { background: #1558b0; box-shadow: 0 1px 2px 0 #3c404380; }
""")
    neg(f"""
<img alt="logo" src="data:image/png;base64,{png_b64()}" width="48" height="48">
<link rel="preload" href="/fonts/inter.woff2" integrity="sha384-{b64(48)}" crossorigin>
""")
    neg("""
Spare parts — price list 2024/Q3
Part no. 555-0123-A   hinge, left         £4.20
Part no. 020-7946-BK  gasket set          £11.95
Part no. 0161-496-77  filter cartridge    £7.40
Model RX-7700-900 compressor, 240 V 50 Hz
Catalogue page 07700 / 900-series fittings
""")
    neg("""
Quarterly sales — EMEA
Revenue grew 14.2% to €48.7m (Q2: €42.6m). Gross margin 61.3%, up 180 bp.
Top markets: Germany 31%, France 22%, Spain 12%. Headcount 412 (+9).
HQ coordinates: 51.5072° N, 0.1276° W. Next update 24/07/2024.
""")
    neg("""
$ history
  201  ssh-keygen -t ed25519 -C "laptop-2024"
  202  kubectl config use-context staging
  203  export AWS_PROFILE=staging
  204  terraform plan -var-file=envs/staging.tfvars -out plan.bin
  205  docker build -t registry.example.com/api:1.14.2 .
  206  git log --oneline -5
  207  echo $DB_PASSWORD | wc -c
""")
    neg("""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 3
  template:
    spec:
      containers:
        - name: api
          image: registry.example.com/api:1.14.2
          env:
            - name: DATABASE_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: api-db
                  key: password
            - name: STRIPE_SECRET_KEY
              valueFrom:
                secretKeyRef: { name: api-stripe, key: secret }
""")
    neg("""
variable "db_password" {
  description = "Master password for the RDS instance"
  type        = string
  sensitive   = true
}

resource "aws_db_instance" "main" {
  username = var.db_username
  password = var.db_password
  tags     = { Name = "orders-${var.env}" }
}
""")
    neg("""
# .npmrc (committed; the token comes from CI)
registry=https://registry.npmjs.org/
//registry.npmjs.org/:_authToken=${NPM_TOKEN}
@acme:registry=https://npm.pkg.github.com/
//npm.pkg.github.com/:_authToken=${GITHUB_TOKEN}
""")
    neg("""
[pypi]
username = __token__
password = <paste your PyPI API token here>

[testpypi]
username = __token__
password = ********
""")
    neg(f"""
Exception in thread "main" java.lang.IllegalStateException: Pool exhausted (active=50, idle=0)
	at com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:181)
	at com.example.app.Repo.findAll(Repo.java:44)
	at com.example.app.Main.main(Main.java:17)
	Suppressed: java.lang.Throwable: HikariDataSource@6d06d69c (pool-1) thread 0x00007f3a2c00b800
Heap: 512M used of 1024M, GC count 118, safepoint 0x00007f3a2c00c000
""")
    neg(f"""
Perf regression since v3.2.0 — here are the numbers from `cargo bench` on an M2 (macOS 14.5):

| bench | v3.1.4 | v3.2.0 |
|---|---|---|
| parse/small | 1.82 µs | 2.47 µs |
| parse/large | 211 µs | 306 µs |

Bisected to {hexs(40)}. Related: #3310, #3314. cc @maintainers
""")
    neg(f"""
Ethereum tx {('0x' + hexs(64))}
  block 20071244 · status success · gas used 21,000 · nonce 117
Bitcoin tx {hexs(64)} (confirmed, 3 blocks)
Contract bytecode hash: 0x{hexs(64)}
""")
    neg(f"""
Address validation failures (checksum errors), first 3 of 41:
  {broken_b58()}
  {broken_b58()}
  {broken_b58()}
All rejected before broadcast; no funds moved.
""")
    neg(f"""
NHS number validation — rejected inputs (fail the modulus 11 check):
  {bad_nhs(" ")}
  {bad_nhs(" ")}
  {bad_nhs("-")}
  {bad_nhs("")}
Accepted format: 10 digits, optional spaces as 3-3-4.
""")
    neg("""
National Insurance number format notes (HMRC): prefixes BG, GB, KN, NK, NT, TN and ZZ are never issued, and D, F, I, Q, U, V are not used as either letter.
Examples of rejected values from the import: QQ 12 34 56 A, GB123456A, TN 31 12 58 F, BG 49 22 10 C
""")
    neg("""
Timeline of the project
Founded 12 May 1962 in Bristol; moved to Swindon on 3 March 1987.
The current building opened 19/11/1984. The archive covers 01/01/1950 to 31/12/1999.
""")
    neg("""
Gate A12 closes 30 minutes before departure. Seat J45 is an exit row. Room E11 is on the first floor.
Clause F32.1 of the contract applies to late delivery. Bus route C50 runs every 12 minutes.
""")
    neg("""
History seminar, week 6: the Great Depression and the Dust Bowl.
Reading: "Anxiety and the markets" (Economist, 2009); "The fever of speculation, 1929".
The term "market depression" is used loosely in the press.
""")
    neg("""
Welcome to the Customer Service Team! The New York Stock Exchange opens at 9:30 ET.
Meet us at Victoria Station, then walk to Westminster Abbey and Kings Cross.
Regards, The Support Desk — Acme Holdings Ltd.
""")
    neg("""
STATUS   WAREHOUSE   TICKET
BUSINESS DELIVERY    OPEN
FEEDBACK HOSPITAL    CLOSED
CUSTOMER REFUNDED    PENDING
""")
    neg("""
# .env.example — copy to .env and fill in
DATABASE_URL=postgres://USER:PASSWORD@localhost:5432/app
SECRET_KEY=changeme-in-production
STRIPE_SECRET_KEY=sk_live_...
OPENAI_API_KEY=YOUR_API_KEY_HERE
SLACK_BOT_TOKEN=xoxb-your-token
AWS_SECRET_ACCESS_KEY=<secret>
""")
    neg(f"""
-----BEGIN CERTIFICATE-----
{chr(10).join(cert_pem().splitlines()[1:-1])}
-----END CERTIFICATE-----
{public_pem()}
""")
    neg(f"""
$ cat ~/.ssh/authorized_keys
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{rs(43, B64)} build@ci-runner-03
ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQ{rs(200, B64)} ops@bastion
""")
    neg("""
Decoding the header only: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9 -> {"alg":"HS256","typ":"JWT"}
A JWT has three dot-separated parts; the tokens in our docs are shown as eyJ... to avoid leaking real ones.
""")
    neg("""
@app.route("/users/<int:user_id>")
@login_required
def profile(user_id):
    return render_template("profile.html", user=User.query.get_or_404(user_id))
# ping @backend-team and @ops-oncall on Slack; std::chrono::steady_clock::now()
""")
    neg("""
Firmware changelog
  v2.4.10 (build 2.4.10.117) — fixes Wi-Fi roaming
  v10.0.19045.3803 — OS baseline
  SQL Server 15.0.2000.5; OID 1.3.6.1.4.1.311.21.7
  invalid test addresses rejected: 256.256.256.256, 10.0.0.300, 999.10.3.1
""")
    neg(f"""
arn:aws:iam::123456789012:role/ci-deployer
arn:aws:s3:::acme-logs-eu-west-2/alb/AWSLogs/123456789012/
Instance i-0{hexs(16)} in subnet-0{hexs(16)}, sg-0{hexs(16)}, vpc-0{hexs(8)}
AMI ami-0{hexs(16)} (al2023-ami-2023.4.20240611.0-kernel-6.1-x86_64)
""")
    neg("""
services:
  db:
    image: postgres:16
    environment:
      POSTGRES_PASSWORD_FILE: /run/secrets/db_password
    secrets: [db_password]
secrets:
  db_password:
    file: ./secrets/db_password.txt
""")
    neg("""
Flight BA0117 LHR–JFK, departs 11:40, arrives 14:35 local. Booking reference PNR X7KQ2M.
E-ticket 125-2345678901, seat 23A, baggage 1x23kg. Terminal 5, gate closes 11:00.
Return BA0178 on 21 Jun. Frequent flyer tier: Silver.
""")
    neg("""
Reference ranges (adult), Clinical Biochemistry handbook 2024
HbA1c 20–41 mmol/mol; fasting glucose 3.9–5.5 mmol/L; TSH 0.27–4.2 mU/L; ferritin 30–400 µg/L
Sample tubes: gold top (SST), lavender (EDTA). Turnaround: 4 h routine, 1 h urgent.
""")
    neg(f"""
Instrument log — Analyser 3 (Cobas)
Run 24-0611-07, reagent lot 88412093, calibrator lot C-4471, QC level 2 within range
Sample IDs: S24-{rs(6, DIG)}, S24-{rs(6, DIG)}, S24-{rs(6, DIG)} (anonymised)
Maintenance due: 2024-06-20
""")
    neg("""
Score update: United 3-1 City (HT 1-1). Attendance 52,117.
Recipe: 250 g flour, 2 eggs, 300 ml milk; 180 °C for 25 min. Ratio 16:9:4, chapter 3:16.
""")
    neg(f"""
Transfer to savings completed. Ref {rs(18, UP + DIG)}
Card payment to TESCO STORES 4471 — £23.18 (card ending 1881)
Direct debit to COUNCIL TAX — £142.00, mandate ref 000{rs(8, DIG)}
Creditor identifier GB98ZZZSDDBARC0000007495445
""")
    neg(f"""
Kubernetes Secret (values are base64, shown here as the encoded defaults from the chart):
data:
  LOG_LEVEL: aW5mbw==
  FEATURE_FLAGS: {base64_json()}
  REGION: ZXUtd2VzdC0y
""")
    neg(f"""
Debug dump of a random nonce buffer (not a key): {b64(24)}
CSRF token format: 43 url-safe base64 chars, regenerated per request.
Password requirements: at least 12 characters, one digit, one symbol.
""")
    neg(f"""
Network diagram notes: the office uses private addressing only; VLANs are tagged 100-140.
Docs use placeholder host names only (db.internal, cache.internal). Version 1.2.3.4 of the agent is deployed.
""")
    neg(f"""
Legacy mobile numbers were migrated; the old prefix table is 07700-07799 (test ranges) and 0800/0808 (freephone).
Extension list: reception x100, IT x4400, facilities x4471. Fax discontinued 2019.
""")
    neg(f"""
Product catalogue export
EAN-13: {ean13("50")}  UPC-A: 0{rs(10, DIG)}5  GTIN-14: 1{rs(13, DIG)}
Colour code RAL 7016, Pantone 2945 C, hex #004c97. Batch 2406-B-117.
""")


def base64_json():
    import base64 as _b
    return _b.b64encode(json.dumps({"newCheckout": True, "betaSearch": False}).encode()).decode()


# =====================================================================================  build
def build():
    tickets()
    clinical()
    chats()
    code()
    config()
    forms()
    emails()
    finance()
    extras()
    negatives()
    return RECORDS


def check(records):
    errs, warns = [], []
    ids = set()
    for r in records:
        assert r["id"] not in ids
        ids.add(r["id"])
        cnt = collections.Counter(e["value"] for e in r["entities"])
        for v, n in cnt.items():
            occ = r["text"].count(v)
            if occ != n:
                warns.append(f"{r['id']}: {v[:50]!r} listed {n}x, occurs {occ}x")
        for e in r["entities"]:
            v = e["value"]
            if v != v.strip() or not v:
                errs.append(f"{r['id']}: whitespace {v!r}")
            k = e["kind"]
            d = re.sub(r"\D", "", v)
            ok = True
            if k == "CREDIT_CARD":
                ok = luhn_valid(d) and 13 <= len(d) <= 19
            elif k == "IBAN":
                ok = iban_valid(v)
            elif k == "UK_NHS":
                ok = nhs_valid(v)
            elif k == "CRYPTO_WALLET":
                ok = (v.startswith("0x") and (v == v.lower() or eip55(v[2:]) == v)) or \
                     (v.startswith("bc1") and segwit_valid(v)) or (v[0] in "13" and b58check_valid(v))
            elif k == "JWT":
                h, p, _ = v.split(".")
                ok = "alg" in json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4))) and \
                    isinstance(json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))), dict)
            elif k == "IP_ADDRESS":
                import ipaddress
                try:
                    ipaddress.ip_address(v)
                except ValueError:
                    ok = False
            if not ok:
                errs.append(f"{r['id']}: invalid {k} {v!r}")
    return errs, warns


def main():
    records = build()
    errs, warns = check(records)
    for w in warns:
        print("warning:", w, file=sys.stderr)
    if errs:
        for e in errs:
            print("ERROR:", e, file=sys.stderr)
        sys.exit(1)
    out = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if "--check" in sys.argv:
        same = open(OUT, encoding="utf-8").read() == out
        print("heldout.jsonl is", "up to date" if same else "STALE")
        sys.exit(0 if same else 1)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(out)
    kinds = collections.Counter(e["kind"] for r in records for e in r["entities"])
    print(f"{len(records)} records, {sum(kinds.values())} entities, "
          f"{sum(1 for r in records if not r['entities'])} without entities")
    for k, n in sorted(kinds.items(), key=lambda x: -x[1]):
        print(f"  {k:24s} {n}")


if __name__ == "__main__":
    main()
