import json, re, sys
from helpers import *

V = {}
for i in range(1, 13): V[f"ak{i}"] = aws_ak()
V["asia1"] = aws_ak("ASIA")
for i in range(1, 13): V[f"as{i}"] = aws_sk()
for i in range(1, 8): V[f"ghp{i}"] = gh("ghp_")
V["gho1"] = gh("gho_"); V["ghs1"] = gh("ghs_"); V["ghs2"] = gh("ghs_"); V["ghu1"] = gh("ghu_")
for i in range(1, 4): V[f"ghpat{i}"] = gh_pat()
for i in range(1, 8): V[f"xoxb{i}"] = slack_bot()
for i in range(1, 4): V[f"xoxp{i}"] = slack_user()
V["xapp1"] = slack_app()
for i in range(1, 6): V[f"hook{i}"] = slack_hook()
for i in range(1, 6): V[f"sk_live{i}"] = stripe("sk_live_", 24 + 4 * i)
V["sk_live_long"] = stripe("sk_live_51", 97)
V["rk_live1"] = stripe("rk_live_", 32); V["rk_live2"] = stripe("rk_live_", 24)
V["sk_test1"] = stripe("sk_test_", 24); V["sk_test2"] = stripe("sk_test_51", 97)
for i in range(1, 11): V[f"gkey{i}"] = gkey()
for i in range(1, 8): V[f"oap{i}"] = oa_proj()
for i in range(1, 5): V[f"oal{i}"] = oa_legacy()
V["jwt1"] = jwt({"sub": "88213", "name": "Customer 88213", "iat": 1710241200, "exp": 4070908800})
V["jwt2"] = jwt({"sub": "staging-user-17", "role": "admin", "iat": 1712000000, "exp": 1712003600})
V["jwt3"] = jwt({"iss": "https://auth.example.com", "sub": "test-user", "aud": "perimeter-api", "iat": 1700000000})
V["jwt4"] = jwt({"sub": "4410", "scope": "read:reports write:reports", "iat": 1714000000, "exp": 1714003600}, "RS256", 256)
V["jwt5"] = jwt({"email_hash": "d41d8cd9", "purpose": "magic-link", "iat": 1715000000, "exp": 1715000900})
V["jwt6"] = jwt({"sub": "svc-billing", "tenant": "acme-eu", "iat": 1716000000}, "HS512", 64)
V["jwt7"] = jwt({"sub": "1029", "session": "web", "iat": 1717000000, "exp": 1717086400})
V["jwt8"] = jwt({"client_id": "mobile-app", "sub": "77", "iat": 1718000000}, "ES256", 64)
V["jwt9"] = jwt({"sub": "device-0042", "iat": 1719000000, "exp": 1719600000})
V["pem_rsa1"] = pem("RSA PRIVATE KEY"); V["pem_rsa2"] = pem("RSA PRIVATE KEY", 200)
V["pem_rsa3"] = pem("RSA PRIVATE KEY", 180)
V["pem_p8_1"] = pem("PRIVATE KEY"); V["pem_p8_2"] = pem("PRIVATE KEY", 190)
V["pem_ec1"] = pem("EC PRIVATE KEY", 110); V["pem_ec2"] = pem("EC PRIVATE KEY", 110)
V["pem_ssh1"] = pem("OPENSSH PRIVATE KEY", 260); V["pem_ssh2"] = pem("OPENSSH PRIVATE KEY", 200)
V["pem_ec1_ind"] = V["pem_ec1"].replace("\n", "\n    ")
V["pem_p8_json"] = V["pem_p8_2"].replace("\n", "\\n")
for i in range(1, 6): V[f"hex40_{i}"] = hexs(40)
for i in range(1, 6): V[f"hex32_{i}"] = hexs(32)
for i in range(1, 4): V[f"hex64_{i}"] = hexs(64)
for i in range(1, 6): V[f"b64s{i}"] = rs(43, ALNUM + "_-")
V["django_key"] = rs(50, ALNUM + "!@#%^&*(-_=+)")
for i in range(1, 13): V[f"nhs{i}"] = make_nhs(" ")
V["nhs_dash"] = make_nhs("-"); V["nhs_nosep"] = make_nhs("")
V["nhs7"] = V["nhs_dash"].replace("-", " ")
V["nhs_bad1"] = bad_nhs(" "); V["nhs_bad2"] = bad_nhs("")
for i in range(1, 5): V[f"btc1_{i}"] = b58check(0, bytes(R.getrandbits(8) for _ in range(20)))
for i in range(1, 3): V[f"btc3_{i}"] = b58check(5, bytes(R.getrandbits(8) for _ in range(20)))
for i in range(1, 4): V[f"bc1q_{i}"] = segwit_addr(0, bytes(R.getrandbits(8) for _ in range(20)))
V["bc1p_1"] = segwit_addr(1, bytes(R.getrandbits(8) for _ in range(32)))
for i in range(1, 5): V[f"eth{i}"] = eip55(hexs(40))
V["eth_lower"] = "0x" + hexs(40)
V["sha40"] = hexs(40); V["sha64"] = hexs(64)
V["pub_pem"] = pem("PUBLIC KEY", 250); V["cert_pem"] = pem("CERTIFICATE", 300)
V["sri"] = base64.b64encode(bytes(R.getrandbits(8) for _ in range(64))).decode()

RECS = []
def sub(s):
    def rep(m):
        return V[m.group(1)]
    return re.sub(r"«([a-zA-Z0-9_]+)»", rep, s)
def add(rid, genre, text, ents=()):
    RECS.append({"id": rid, "genre": genre, "text": sub(text),
                 "entities": [{"kind": k, "value": sub(v)} for k, v in ents]})

# =====================================================================
# support_ticket
# =====================================================================
G = "support_ticket"
add("ticket-001", G, """Ticket #48213 — Billing
Customer: Halina Nowak (halina.nowak@example.com)
Phone: 07700 900461
She says the card 4111 1111 1111 1111 was charged twice for order #1000023456. Please refund the duplicate and confirm by email.""",
    [("PERSON", "Halina Nowak"), ("EMAIL", "halina.nowak@example.com"), ("PHONE", "07700 900461"),
     ("CREDIT_CARD", "4111 1111 1111 1111")])

add("ticket-002", G, """Subject: Locked out after password reset
User Owen Pritchard reports repeated lockouts from 203.0.113.7. Device MAC 00:1A:2B:3C:4D:5E is registered to his laptop.
Temporary password issued: Xq7#mPz9!vL2 — user must change it on next login.""",
    [("PERSON", "Owen Pritchard"), ("IP_ADDRESS", "203.0.113.7"), ("MAC_ADDRESS", "00:1A:2B:3C:4D:5E"),
     ("PASSWORD", "Xq7#mPz9!vL2")])

add("ticket-003", G, """Hi, I moved house last month. Please update my delivery address to 14 Wren Street, Alder Bridge AV3 7QT.
My old address was 221 Harbour Road, so anything still going there should be redirected.
Account holder: Mrs Priya Sharma, tel. +44 7700 900123""",
    [("STREET_ADDRESS", "14 Wren Street, Alder Bridge AV3 7QT"), ("STREET_ADDRESS", "221 Harbour Road"),
     ("PERSON", "Priya Sharma"), ("PHONE", "+44 7700 900123")])

add("ticket-004", G, """Vendor onboarding — ticket VND-2231
Contractor Marcus Bell submitted a W-9 with ITIN 912-78-1234 instead of an SSN. His previous form listed SSN 536-22-1187.
Please confirm which one payroll should use before the 15th. Contact: marcus.bell@example.net""",
    [("PERSON", "Marcus Bell"), ("US_ITIN", "912-78-1234"), ("US_SSN", "536-22-1187"), ("EMAIL", "marcus.bell@example.net")])

add("ticket-005", G, """Priority: P1 — leaked credential
A customer pasted their production secret key into the chat widget: «sk_live1»
Please roll the key in the dashboard and notify the account owner, Daniel Okafor (d.okafor@example.org).""",
    [("STRIPE_KEY", "«sk_live1»"), ("PERSON", "Daniel Okafor"), ("EMAIL", "d.okafor@example.org")])

add("ticket-006", G, """Maps widget shows "RefererNotAllowedMapError" on the store locator.
Our embed uses https://maps.googleapis.com/maps/api/js?key=«gkey1»&callback=initMap and the page is served from 198.51.100.23.
Reporter: Sarah Johnson (Web team)""",
    [("GOOGLE_API_KEY", "«gkey1»"), ("IP_ADDRESS", "198.51.100.23"), ("PERSON", "Sarah Johnson")])

add("ticket-007", G, """IT Service Desk — Ward 7B
The label printer is printing the wrong wristbands. Example: patient Ms Grace Adeyemi, MRN: AV-0048213, NHS number 943 476 5919, came out with another patient's details.
Please escalate to the EPR team. Printer asset tag PRN-00731.""",
    [("PERSON", "Grace Adeyemi"), ("MEDICAL_RECORD_NUMBER", "AV-0048213"), ("UK_NHS", "943 476 5919")])

add("ticket-008", G, """Claim query from policyholder Thomas Becker (DOB: 14/03/1984).
The claim relates to treatment for asthma at a private clinic in March. Policy number PL-2291-0047.
He can be reached on 020 7946 0958 after 5pm.""",
    [("PERSON", "Thomas Becker"), ("DATE_OF_BIRTH", "14/03/1984"), ("MEDICAL_CONDITION", "asthma"),
     ("PHONE", "020 7946 0958")])

add("ticket-009", G, """Withdrawal stuck for 6 hours.
Destination wallet: bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq
TXID 4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b
Account email: crypto.fan@example.net""",
    [("CRYPTO_WALLET", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"), ("EMAIL", "crypto.fan@example.net")])

add("ticket-010", G, """KYC review: the uploaded passport for applicant Aleksander Nowicki (passport no. 533401372, expiry 2031-06-30) is too blurry to read the MRZ.
Ask the customer to re-upload. Applicant's UK NI number: JG 10 38 47 D.""",
    [("PERSON", "Aleksander Nowicki"), ("PASSPORT", "533401372"), ("UK_NINO", "JG 10 38 47 D")])

add("ticket-011", G, """Build #5521 failed at the checkout step. The log prints the clone URL with an embedded token:
https://x-access-token:«ghs1»@github.com/perimeter-labs/api.git
Please scrub the log and revoke the installation token. Runner IP 10.0.0.12.""",
    [("GITHUB_TOKEN", "«ghs1»"), ("IP_ADDRESS", "10.0.0.12")])

add("ticket-012", G, """Refund request: customer Jürgen Weber asks us to send the refund of €149.00 by bank transfer.
IBAN DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX. Reference REF-77120.""",
    [("PERSON", "Jürgen Weber"), ("IBAN", "DE89 3704 0044 0532 0130 00"), ("SWIFT_BIC", "COBADEFFXXX")])

add("ticket-013", G, """Caller: Mr Kevin Alvarez
Callback: (415) 555-0132
Issue: package delivered to 1600 Elm Avenue, Springfield, IL 62704 instead of 1620 Elm Avenue. Tracking 1Z999AA10123456784.""",
    [("PERSON", "Kevin Alvarez"), ("PHONE", "(415) 555-0132"), ("STREET_ADDRESS", "1600 Elm Avenue, Springfield, IL 62704"),
     ("STREET_ADDRESS", "1620 Elm Avenue")])

add("ticket-014", G, """Customer attached a HAR file to the ticket. The request headers include
Authorization: Bearer «jwt1»
The token's exp is years away, so it is still usable — please invalidate all sessions for user id 88213 and delete the attachment.""",
    [("JWT", "«jwt1»")])

add("ticket-015", G, """Our integration stopped working after we rotated keys.
Old key: «oal1»
New key: «oap1»
Can you check why the new one returns 401? — Li Wei, Platform team""",
    [("OPENAI_API_KEY", "«oal1»"), ("OPENAI_API_KEY", "«oap1»"), ("PERSON", "Li Wei")])

add("ticket-016", G, """Please rotate the Slack bot token that was posted in #general by mistake:
«xoxb1»
Posted by Fatima Zahra at 14:02; message deleted at 14:05.""",
    [("SLACK_TOKEN", "«xoxb1»"), ("PERSON", "Fatima Zahra")])

add("ticket-017", G, """Customer reports card 4111 1111 1111 1112 rejected at checkout — expected, that number fails the Luhn check.
Asked them to retry with a valid card. Order #4111111111111112 left pending. Contact: ops-billing@example.com""",
    [("EMAIL", "ops-billing@example.com")])

add("ticket-018", G, """Network ticket NET-0412: switch port Gi1/0/17 flapping.
Connected device: MAC 0c-8d-db-4e-21-f0, leased IP 172.16.4.20. Second device on the same port: a4:83:e7:12:9c:0b.
Reported by Tomasz Zielinski, ext. 4417.""",
    [("MAC_ADDRESS", "0c-8d-db-4e-21-f0"), ("IP_ADDRESS", "172.16.4.20"), ("MAC_ADDRESS", "a4:83:e7:12:9c:0b"),
     ("PERSON", "Tomasz Zielinski")])

add("ticket-019", G, """Hi support,
My account was emailed a password reset I didn't request. My details: Chloe Martin, born on 19 January 1988, account email chloe.martin@example.com.
I can confirm my passport number 120482931 if you need ID. Please call 0114 496 0271.""",
    [("PERSON", "Chloe Martin"), ("DATE_OF_BIRTH", "19 January 1988"), ("EMAIL", "chloe.martin@example.com"),
     ("PASSPORT", "120482931"), ("PHONE", "0114 496 0271")])

add("ticket-020", G, """Escalation: developer committed credentials in repo perimeter/web (commit 3f9e2a1).
AWS_ACCESS_KEY_ID=«ak12»
AWS_SECRET_ACCESS_KEY=«as12»
GITHUB_TOKEN=«ghp7»
Keys disabled 11:20 UTC; please confirm CloudTrail shows no calls from unknown source IPs.""",
    [("AWS_ACCESS_KEY", "«ak12»"), ("AWS_SECRET_KEY", "«as12»"), ("GITHUB_TOKEN", "«ghp7»")])

add("ticket-021", G, """Tax query — ticket TX-9920
Customer Ana Souza says the 1099 we issued shows her ITIN as 945-81-2267 but her new ITIN is 983-74-5510. Her address on file: 915 Oak Street, Newark, NJ 07102.""",
    [("PERSON", "Ana Souza"), ("US_ITIN", "945-81-2267"), ("US_ITIN", "983-74-5510"),
     ("STREET_ADDRESS", "915 Oak Street, Newark, NJ 07102")])

add("ticket-022", G, """Payout failed: the beneficiary bank rejected the SWIFT transfer. Beneficiary: Olusegun Adebayo, IBAN NL91ABNA0417164300, SWIFT ABNANL2A.
Bank message: "RC01 invalid BIC format" — but the BIC looks right to me. Ticket raised by finance-ops@example.com.""",
    [("PERSON", "Olusegun Adebayo"), ("IBAN", "NL91ABNA0417164300"), ("SWIFT_BIC", "ABNANL2A"), ("EMAIL", "finance-ops@example.com")])

# =====================================================================
# clinical_note
# =====================================================================
G = "clinical_note"
add("clin-001", G, """Patient: Mrs Halina Nowak
DOB: 02/07/1958
MRN: AV-0051127
NHS No: «nhs1»
Assessment: Type 2 diabetes mellitus (E11.9), poorly controlled, HbA1c 71 mmol/mol. Hypertension (I10) stable on amlodipine 5 mg.
Plan: increase metformin to 1 g BD, repeat HbA1c in 3 months.
Seen by Dr Amira Haddad, 12/03/2024.""",
    [("PERSON", "Halina Nowak"), ("DATE_OF_BIRTH", "02/07/1958"), ("MEDICAL_RECORD_NUMBER", "AV-0051127"),
     ("UK_NHS", "«nhs1»"), ("MEDICAL_CONDITION", "Type 2 diabetes mellitus"), ("MEDICAL_CONDITION", "E11.9"),
     ("MEDICAL_CONDITION", "Hypertension"), ("MEDICAL_CONDITION", "I10"), ("PERSON", "Amira Haddad")])

add("clin-002", G, """A&E attendance note
Name: Oliver Hughes
Hospital number: 4471920
17-year-old with acute exacerbation of asthma (J45.909). SpO2 93% on air, RR 28. Given salbutamol nebulisers x3 and oral prednisolone.
Mother (Karen Hughes) contactable on 07700 900218. Discharge when PEF > 75% predicted.""",
    [("PERSON", "Oliver Hughes"), ("MEDICAL_RECORD_NUMBER", "4471920"), ("MEDICAL_CONDITION", "asthma"),
     ("MEDICAL_CONDITION", "J45.909"), ("PERSON", "Karen Hughes"), ("PHONE", "07700 900218")])

add("clin-003", G, """Mental health review — Patient ID: PT-100245
Mr Daniel Reyes, born on 2 May 1990, attends for follow-up of moderate depression (F32.1). PHQ-9 score 14 (previously 19).
Continue sertraline 100 mg OD. Safety-netting advice given. Next review with Dr Priya Raman in 4 weeks.""",
    [("MEDICAL_RECORD_NUMBER", "PT-100245"), ("PERSON", "Daniel Reyes"), ("DATE_OF_BIRTH", "2 May 1990"),
     ("MEDICAL_CONDITION", "depression"), ("MEDICAL_CONDITION", "F32.1"), ("PERSON", "Priya Raman")])

add("clin-004", G, """Respiratory clinic letter
Re: Mr Gareth Llewellyn, Date of birth: 1949-11-23, NHS number «nhs2»
Address: 9 Station Road, Pontbrook PB15 4LT
Diagnosis: COPD (J44.9) with frequent exacerbations. Current smoker, 40 pack-years. FEV1 48% predicted.
Referred for pulmonary rehabilitation.""",
    [("PERSON", "Gareth Llewellyn"), ("DATE_OF_BIRTH", "1949-11-23"), ("UK_NHS", "«nhs2»"),
     ("STREET_ADDRESS", "9 Station Road, Pontbrook PB15 4LT"), ("MEDICAL_CONDITION", "COPD"), ("MEDICAL_CONDITION", "J44.9")])

add("clin-005", G, """MDT outcome — MRN 00912837
Patient: Ms Rebecca Lindqvist, 52F
Histology confirms invasive ductal carcinoma of the right breast (C50.911). ER+/HER2-.
Plan: wide local excision followed by adjuvant radiotherapy. Discussed by Mr Anand Patel (consultant breast surgeon).""",
    [("MEDICAL_RECORD_NUMBER", "00912837"), ("PERSON", "Rebecca Lindqvist"),
     ("MEDICAL_CONDITION", "invasive ductal carcinoma"), ("MEDICAL_CONDITION", "C50.911"), ("PERSON", "Anand Patel")])

add("clin-006", G, """Renal outpatient note. Patient ID: PT-100987.
Known chronic kidney disease stage 3 (N18.3) secondary to hypertension. eGFR 41, K+ 4.9.
Contact number on file: 0113 496 0721. GP: Dr Helen Marsh, Elmfield Surgery.""",
    [("MEDICAL_RECORD_NUMBER", "PT-100987"), ("MEDICAL_CONDITION", "chronic kidney disease stage 3"),
     ("MEDICAL_CONDITION", "N18.3"), ("MEDICAL_CONDITION", "hypertension"), ("PHONE", "0113 496 0721"),
     ("PERSON", "Helen Marsh")])

add("clin-007", G, """Neurology triage
Name: Siobhán O'Neill
D.O.B. 07.08.1992
Hosp No: K1234567
Referral for epilepsy (G40.909) — two unprovoked seizures in 3 months. DVLA driving advice given.
Next of kin: Ciarán O'Neill, 07700 900777.""",
    [("PERSON", "Siobhán O'Neill"), ("DATE_OF_BIRTH", "07.08.1992"), ("MEDICAL_RECORD_NUMBER", "K1234567"),
     ("MEDICAL_CONDITION", "epilepsy"), ("MEDICAL_CONDITION", "G40.909"), ("PERSON", "Ciarán O'Neill"),
     ("PHONE", "07700 900777")])

add("clin-008", G, """DISCHARGE SUMMARY — MRN: 20-448-1937
Patient: James Carter   DOB: 03/22/1967   SSN: 401-63-2290
Admitted with community-acquired pneumonia (J18.9). PMH: hypertension, GERD (K21.9).
Discharged home to 742 Evergreen Terrace, Springfield on oral amoxicillin. Follow up with PCP in 1 week.""",
    [("MEDICAL_RECORD_NUMBER", "20-448-1937"), ("PERSON", "James Carter"), ("DATE_OF_BIRTH", "03/22/1967"),
     ("US_SSN", "401-63-2290"), ("MEDICAL_CONDITION", "community-acquired pneumonia"), ("MEDICAL_CONDITION", "J18.9"),
     ("MEDICAL_CONDITION", "hypertension"), ("MEDICAL_CONDITION", "GERD"), ("MEDICAL_CONDITION", "K21.9"),
     ("STREET_ADDRESS", "742 Evergreen Terrace, Springfield")])

add("clin-009", G, """GP consultation, clinic room 3.
Patient: Aisha Khan, DOB 1985-04-30, MRN: AV-0062290.
Presents with generalised anxiety disorder (F41.1), sleep poor. Bloods: vitamin B12 and ferritin normal. BP 128/82.
Plan: CBT referral; review in 6 weeks with Dr Tomasz Zielinski.""",
    [("PERSON", "Aisha Khan"), ("DATE_OF_BIRTH", "1985-04-30"), ("MEDICAL_RECORD_NUMBER", "AV-0062290"),
     ("MEDICAL_CONDITION", "generalised anxiety disorder"), ("MEDICAL_CONDITION", "F41.1"), ("PERSON", "Tomasz Zielinski")])

add("clin-010", G, """Health visitor note. Child: Noah Fischer (DOB: 11/09/2019).
Lives with parents at Flat 2, 37 Mill Lane, Kestrel Vale KV2 9HB.
Mild intermittent asthma, uses reliever inhaler approx. twice a month. Mother: Anna Fischer, anna.fischer@example.com.""",
    [("PERSON", "Noah Fischer"), ("DATE_OF_BIRTH", "11/09/2019"), ("STREET_ADDRESS", "37 Mill Lane, Kestrel Vale KV2 9HB"),
     ("MEDICAL_CONDITION", "asthma"), ("PERSON", "Anna Fischer"), ("EMAIL", "anna.fischer@example.com")])

add("clin-011", G, """Handover 19:00 — Bay 3 bed 2
Mr Ahmed Siddiqui, hospital number 5529013, NHS «nhs3». Day 2 post laparoscopic cholecystectomy.
Background: type 2 diabetes, atrial fibrillation (I48.91) on apixaban. NEWS 2. Sliding scale stopped 14:00.""",
    [("PERSON", "Ahmed Siddiqui"), ("MEDICAL_RECORD_NUMBER", "5529013"), ("UK_NHS", "«nhs3»"),
     ("MEDICAL_CONDITION", "type 2 diabetes"), ("MEDICAL_CONDITION", "atrial fibrillation"), ("MEDICAL_CONDITION", "I48.91")])

add("clin-012", G, """Telehealth note
Patient: Mia Schofield, born on 25 December 2001, MRN: AV-0071554.
Reports low mood and poor concentration for 3 weeks; PHQ-9 12. Impression: depression, mild (F32.0).
Video call connected from 192.0.2.44 (logged per telehealth policy). Follow-up in 2 weeks.""",
    [("PERSON", "Mia Schofield"), ("DATE_OF_BIRTH", "25 December 2001"), ("MEDICAL_RECORD_NUMBER", "AV-0071554"),
     ("MEDICAL_CONDITION", "depression"), ("MEDICAL_CONDITION", "F32.0"), ("IP_ADDRESS", "192.0.2.44")])

add("clin-013", G, """Dear Dr Rachel Evans,
Re: Mr Peter Novak, DOB 21/12/1971, 58 Beech Grove, Harrowgate Hill HG4 1ZX, NHS «nhs4»
Thank you for referring this gentleman with hypertension (I10) and hyperlipidaemia (E78.5). His ambulatory BP average was 152/94.
I have started ramipril 2.5 mg and atorvastatin 20 mg.
Yours sincerely,
Dr Samuel Osei, Consultant Physician""",
    [("PERSON", "Rachel Evans"), ("PERSON", "Peter Novak"), ("DATE_OF_BIRTH", "21/12/1971"),
     ("STREET_ADDRESS", "58 Beech Grove, Harrowgate Hill HG4 1ZX"), ("UK_NHS", "«nhs4»"),
     ("MEDICAL_CONDITION", "hypertension"), ("MEDICAL_CONDITION", "I10"), ("MEDICAL_CONDITION", "hyperlipidaemia"),
     ("MEDICAL_CONDITION", "E78.5"), ("PERSON", "Samuel Osei")])

add("clin-014", G, """Teaching case (anonymised): a 64-year-old man with COPD (J44.1) presents with increased sputum purulence and breathlessness.
He also has heart failure with reduced ejection fraction (I50.2). Discuss the choice of antibiotic and steroid course.""",
    [("MEDICAL_CONDITION", "COPD"), ("MEDICAL_CONDITION", "J44.1"),
     ("MEDICAL_CONDITION", "heart failure with reduced ejection fraction"), ("MEDICAL_CONDITION", "I50.2")])

add("clin-015", G, """Pre-op assessment
Patient ID: PT-101344   Name: Mr Ibrahim Yilmaz   DOB: 03/03/1975   NHS number: «nhs_dash»
PMH: obstructive sleep apnoea (G47.33) on CPAP; hypertension. Airway Mallampati II.
Contact: 0117 496 0555. Anaesthetist: Dr Elodie Marchand.""",
    [("MEDICAL_RECORD_NUMBER", "PT-101344"), ("PERSON", "Ibrahim Yilmaz"), ("DATE_OF_BIRTH", "03/03/1975"),
     ("UK_NHS", "«nhs_dash»"), ("MEDICAL_CONDITION", "obstructive sleep apnoea"), ("MEDICAL_CONDITION", "G47.33"),
     ("MEDICAL_CONDITION", "hypertension"), ("PHONE", "0117 496 0555"), ("PERSON", "Elodie Marchand")])

# =====================================================================
# chat_log
# =====================================================================
G = "chat_log"
add("chat-001", G, """[09:14] Agent: Thanks for contacting Northwind Support. Can I take your full name?
[09:14] Customer: Emily Carter
[09:15] Agent: And the email on the account?
[09:15] Customer: emily dot carter at example dot com
[09:16] Customer: my card is 5555 5555 5555 4444 exp 09/27
[09:16] Agent: Please don't share full card numbers in chat — I've masked it on our side.""",
    [("PERSON", "Emily Carter"), ("EMAIL", "emily dot carter at example dot com"), ("CREDIT_CARD", "5555 5555 5555 4444")])

add("chat-002", G, """#infra
[16:40] oncall-sre: deploy to eu-west-2 is failing with ExpiredToken, anyone?
[16:42] backend-dev: creds in the runner expired. use these for now:
AWS_ACCESS_KEY_ID=«ak2»
AWS_SECRET_ACCESS_KEY=«as2»
[16:43] oncall-sre: thanks — rotating them straight after the deploy""",
    [("AWS_ACCESS_KEY", "«ak2»"), ("AWS_SECRET_KEY", "«as2»")])

add("chat-003", G, """Mum: what's the new address again?
Me: 88 Orchard Close, Little Hampden LH7 2DW
Mum: and the landline?
Me: 0161 496 0384, mobile is still 07700 900912
Mum: ok love. Who are you seeing at the surgery tomorrow?
Me: Dr Nia Lewis at 10""",
    [("STREET_ADDRESS", "88 Orchard Close, Little Hampden LH7 2DW"), ("PHONE", "0161 496 0384"),
     ("PHONE", "07700 900912"), ("PERSON", "Nia Lewis")])

add("chat-004", G, """[21:03] Customer: I sent 0.05 BTC to 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2 yesterday but it hasn't arrived
[21:04] Agent: That address isn't one of ours. Your deposit address is 3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy.
[21:05] Customer: and for ETH?
[21:05] Agent: ETH deposit wallet: «eth1»""",
    [("CRYPTO_WALLET", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"), ("CRYPTO_WALLET", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"),
     ("CRYPTO_WALLET", "«eth1»")])

add("chat-005", G, """user: my VPN keeps dropping every few minutes
helpdesk: what address does the client show?
user: 2001:db8:85a3::8a2e:370:7334, adapter MAC 3c-22-fb-9a-10-7e
helpdesk: gateway is 2001:db8::1 — can you ping it?
user: yes, 14 ms""",
    [("IP_ADDRESS", "2001:db8:85a3::8a2e:370:7334"), ("MAC_ADDRESS", "3c-22-fb-9a-10-7e"), ("IP_ADDRESS", "2001:db8::1")])

add("chat-006", G, """Patient: Hi, this is Ruth Abrams, NHS number «nhs5». I've run out of my asthma inhaler.
Pharmacist: Thanks, I can see your record. I'll request a repeat from your GP.
Patient: Also my depression medication — sertraline — is due next week.
Pharmacist: I'll add it. Both will be sent to the pharmacy at 12 Market Street, Dunmore DN3 4RT.""",
    [("PERSON", "Ruth Abrams"), ("UK_NHS", "«nhs5»"), ("MEDICAL_CONDITION", "asthma"), ("MEDICAL_CONDITION", "depression"),
     ("STREET_ADDRESS", "12 Market Street, Dunmore DN3 4RT")])

add("chat-007", G, """[14:22] backend-dev: here's the PAT for the release script: «ghpat1»
[14:23] sec-bot: ⚠️ Possible secret detected in this channel. Please revoke it.
[14:25] backend-dev: oops, also pasted the staging openai key earlier: «oap2»
[14:25] backend-dev: revoking both now""",
    [("GITHUB_TOKEN", "«ghpat1»"), ("OPENAI_API_KEY", "«oap2»")])

add("chat-008", G, """Chat with Kofi Mensah (new starter)
HR: To finish your right-to-work check I need your passport number and NI number.
Kofi Mensah: Passport 120382749, NI: CE 45 66 12 A
HR: And your date of birth?
Kofi Mensah: 1996-03-08
HR: Thanks, that's everything. Welcome aboard!""",
    [("PERSON", "Kofi Mensah"), ("PERSON", "Kofi Mensah"), ("PERSON", "Kofi Mensah"), ("PASSPORT", "120382749"),
     ("UK_NINO", "CE 45 66 12 A"), ("DATE_OF_BIRTH", "1996-03-08")])

add("chat-009", G, """[11:02] contractor: can you send me the stripe key for the webhook test?
[11:04] lead-dev: «rk_live1»
[11:04] lead-dev: restricted key, read-only on charges. delete it from your notes after.""",
    [("STRIPE_KEY", "«rk_live1»")])

add("chat-010", G, """[08:31] it-support: your temporary password is Blue-Kettle-42
[08:32] new-hire: it says expired?
[08:33] it-support: try Copper#Lantern7 instead, and change it at first login
[08:34] new-hire: that worked, thanks""",
    [("PASSWORD", "Blue-Kettle-42"), ("PASSWORD", "Copper#Lantern7")])

add("chat-011", G, """dev1: token from the staging login, can you check why /reports 403s?
dev1: «jwt2»
dev2: role is admin in the payload... oh, it expired an hour ago. Grab a fresh one. And please don't paste tokens into jwt.io.""",
    [("JWT", "«jwt2»")])

add("chat-012", G, """Agent: Our Paris office is on +33 1 23 45 67 89 and Berlin on +49 30 901820.
Customer: great, and an email?
Agent: emea-sales@example.org, or j.smith(at)example(dot)org to reach Jean Smith directly.""",
    [("PHONE", "+33 1 23 45 67 89"), ("PHONE", "+49 30 901820"), ("EMAIL", "emea-sales@example.org"),
     ("EMAIL", "j.smith(at)example(dot)org"), ("PERSON", "Jean Smith")])

add("chat-013", G, """ci-bot: posting build status to «hook1»
oncall-sre: who committed the webhook URL to the repo?? it's in config/ci.yml
backend-dev: me, sorry. the signing secret is in there too: WEBHOOK_SECRET=«hex40_1»
oncall-sre: rotating both""",
    [("SLACK_TOKEN", "«hook1»"), ("GENERIC_SECRET", "«hex40_1»")])

add("chat-014", G, """[07:40] ward-clerk: patient in bed 6, MRN: AV-0083315 — wristband shows DOB 30/06/1944 but PAS has DOB 30/06/1945
[07:41] nurse-in-charge: PAS is right, please reprint. She's Mrs Edith Clarke, admitted overnight with an exacerbation of COPD.""",
    [("MEDICAL_RECORD_NUMBER", "AV-0083315"), ("DATE_OF_BIRTH", "30/06/1944"), ("DATE_OF_BIRTH", "30/06/1945"),
     ("PERSON", "Edith Clarke"), ("MEDICAL_CONDITION", "COPD")])

add("chat-015", G, """customer: my SSN is 287-54-3321 and my wife's is 145 72 6608
agent: Please don't send Social Security numbers over chat. I'll call you on +1 (312) 555-0199 to verify instead.""",
    [("US_SSN", "287-54-3321"), ("US_SSN", "145 72 6608"), ("PHONE", "+1 (312) 555-0199")])

add("chat-016", G, """[10:11] mobile-dev: Android build can't reach Places API — key is «gkey2»
[10:12] mobile-dev: restricted to package com.example.perimeter
[10:15] platform: that key is in a public repo now, regenerate it. use the one in the vault: «gkey3»
[10:16] platform: ...which I just pasted in Slack. great. regenerating that too.""",
    [("GOOGLE_API_KEY", "«gkey2»"), ("GOOGLE_API_KEY", "«gkey3»")])

add("chat-017", G, """[13:02] finance-bot: Payment from Lucía Fernández received — €1,200.00 from IBAN ES91 2100 0418 4502 0005 1332 (BIC CAIXESBB).
[13:03] accounts: matched to invoice INV-2024-0611. Customer phone +34 912 345 678 if needed.""",
    [("PERSON", "Lucía Fernández"), ("IBAN", "ES91 2100 0418 4502 0005 1332"), ("SWIFT_BIC", "CAIXESBB"),
     ("PHONE", "+34 912 345 678")])

add("chat-018", G, """[18:20] security: the ssh key for the bastion was pasted in #random:
-----8<-----
«pem_ssh2»
-----8<-----
[18:21] security: removed. Key revoked on 10.0.3.7 and all hosts behind it.""",
    [("PRIVATE_KEY", "«pem_ssh2»"), ("IP_ADDRESS", "10.0.3.7")])

add("chat-019", G, """[15:30] Customer: My DOB is 14 Feb 1979 and postcode is BR2 7LU if you need to verify
[15:31] Agent: Thanks. Is the first line of your address still the same?
[15:31] Customer: yes, 4 Kingsway Court, Bramley BR2 7LU
[15:32] Agent: Great, your NI number ending 77 C — full one is SK 90 55 77 C?
[15:32] Customer: correct""",
    [("DATE_OF_BIRTH", "14 Feb 1979"),
     ("STREET_ADDRESS", "4 Kingsway Court, Bramley BR2 7LU"), ("UK_NINO", "SK 90 55 77 C")])

# =====================================================================
# code
# =====================================================================
G = "code"
add("code-001", G, """import boto3

# FIXME: read from the environment before merging
session = boto3.Session(
    aws_access_key_id="«ak1»",
    aws_secret_access_key="«as1»",
    region_name="eu-west-2",
)
s3 = session.client("s3")
""", [("AWS_ACCESS_KEY", "«ak1»"), ("AWS_SECRET_KEY", "«as1»")])

add("code-002", G, """// payments.js
const stripe = require('stripe')('«sk_live2»');
// TODO(Daniel Okafor): move to process.env.STRIPE_SECRET_KEY before the v2.3.0 release

async function charge(customerId, amountPence) {
  return stripe.paymentIntents.create({ customer: customerId, amount: amountPence, currency: 'gbp' });
}
""", [("STRIPE_KEY", "«sk_live2»"), ("PERSON", "Daniel Okafor")])

add("code-003", G, """package main

import (
	"database/sql"
	_ "github.com/lib/pq"
)

func open() (*sql.DB, error) {
	dsn := "postgres://app:S3cr3tPass@db.internal:5432/app?sslmode=disable"
	return sql.Open("postgres", dsn)
}
""", [("PASSWORD", "S3cr3tPass")])

add("code-004", G, """# tests/fixtures/users.py
USERS = [
    {"name": "Sarah Johnson", "email": "sarah.johnson@example.com", "phone": "+1 202 555 0147"},
    {"name": "Tomasz Zielinski", "email": "t.zielinski@example.org", "phone": "020 7946 0321"},
    {"name": "Aiko Tanaka", "email": "aiko.tanaka@example.net", "phone": "+44 113 496 0999"},
]
""", [("PERSON", "Sarah Johnson"), ("EMAIL", "sarah.johnson@example.com"), ("PHONE", "+1 202 555 0147"),
      ("PERSON", "Tomasz Zielinski"), ("EMAIL", "t.zielinski@example.org"), ("PHONE", "020 7946 0321"),
      ("PERSON", "Aiko Tanaka"), ("EMAIL", "aiko.tanaka@example.net"), ("PHONE", "+44 113 496 0999")])

add("code-005", G, """const MAPS_KEY = "«gkey4»";

export async function geocode(addr) {
  const url = `https://maps.googleapis.com/maps/api/geocode/json?address=${encodeURIComponent(addr)}&key=${MAPS_KEY}`;
  const res = await fetch(url);
  return res.json();
}
""", [("GOOGLE_API_KEY", "«gkey4»")])

add("code-006", G, """from openai import OpenAI

client = OpenAI(api_key="«oap3»")

resp = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Summarise this ticket"}],
)
""", [("OPENAI_API_KEY", "«oap3»")])

add("code-007", G, """package auth

import "testing"

const testToken = "«jwt3»"

func TestParseClaims(t *testing.T) {
	c, err := Parse(testToken)
	if err != nil || c.Subject != "test-user" {
		t.Fatalf("unexpected: %v %v", c, err)
	}
}
""", [("JWT", "«jwt3»")])

add("code-008", G, '''# signer.py — do not ship
PRIVATE_KEY = """«pem_rsa1»
"""

def sign(payload: bytes) -> bytes:
    key = serialization.load_pem_private_key(PRIVATE_KEY.encode(), password=None)
    return key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
''', [("PRIVATE_KEY", "«pem_rsa1»")])

add("code-009", G, """import { Octokit } from "@octokit/rest";

const octokit = new Octokit({ auth: "«ghp1»" });
const { data } = await octokit.rest.repos.listForOrg({ org: "perimeter-labs" });
""", [("GITHUB_TOKEN", "«ghp1»")])

add("code-010", G, """from slack_sdk import WebClient

client = WebClient(token="«xoxb2»")
client.chat_postMessage(channel="#alerts", text="Deploy finished :rocket:")
""", [("SLACK_TOKEN", "«xoxb2»")])

add("code-011", G, """package session

// hmacSecret signs session cookies.
var hmacSecret = []byte("9f8e7d6c5b4a39281706f5e4d3c2b1a0ffeeddcc")

func Sign(v []byte) []byte { return mac(hmacSecret, v) }
""", [("GENERIC_SECRET", "9f8e7d6c5b4a39281706f5e4d3c2b1a0ffeeddcc")])

add("code-012", G, """def test_iban_validation():
    assert is_valid_iban("GB82WEST12345698765432")
    assert is_valid_iban("NL91ABNA0417164300")
    assert is_valid_iban("BE68 5390 0754 7034")
    assert not is_valid_iban("GB83WEST12345698765432")  # bad check digits
    assert not is_valid_iban("NL00ABNA0417164300")
""", [("IBAN", "GB82WEST12345698765432"), ("IBAN", "NL91ABNA0417164300"), ("IBAN", "BE68 5390 0754 7034")])

add("code-013", G, """// Stripe test cards used by the checkout e2e suite
const TEST_CARDS = {
  visa: "4242424242424242",
  amex: "378282246310005",
  discover: "6011111111111117",
  jcb: "3530111333300000",
  declined: "4000000000000002",
};
const ORDER_ID = "4111111111111112"; // not a card, order ids are 16 digits too
""", [("CREDIT_CARD", "4242424242424242"), ("CREDIT_CARD", "378282246310005"), ("CREDIT_CARD", "6011111111111117"),
      ("CREDIT_CARD", "3530111333300000"), ("CREDIT_CARD", "4000000000000002")])

add("code-014", G, """ALLOWED_HOSTS = ["203.0.113.7", "198.51.100.23", "2001:db8:4::17"]
DEVICE_MACS = {
    "printer-2f": "00-1a-2b-3c-4d-5e",
    "kiosk-1": "a4:83:e7:12:9c:0b",
}
__version__ = "1.2.3.4"
""", [("IP_ADDRESS", "203.0.113.7"), ("IP_ADDRESS", "198.51.100.23"), ("IP_ADDRESS", "2001:db8:4::17"),
      ("MAC_ADDRESS", "00-1a-2b-3c-4d-5e"), ("MAC_ADDRESS", "a4:83:e7:12:9c:0b")])

add("code-015", G, """cfg := mysql.Config{
	User:   "reporting",
	Passwd: "Tr0ub4dor&3",
	Net:    "tcp",
	Addr:   "10.0.4.21:3306",
	DBName: "reports",
}
db, err := sql.Open("mysql", cfg.FormatDSN())
""", [("PASSWORD", "Tr0ub4dor&3"), ("IP_ADDRESS", "10.0.4.21")])

add("code-016", G, """def test_mask_ssn():
    assert mask("SSN 358-11-4092") == "SSN ***-**-4092"
    assert mask("000-12-3456") == "000-12-3456"  # invalid area number, left untouched
    assert mask("ITIN 921-88-0342") == "ITIN ***-**-0342"
""", [("US_SSN", "358-11-4092"), ("US_ITIN", "921-88-0342")])

add("code-017", G, """// donate.ts
export const DONATION_BTC = "«bc1q_1»";
export const DONATION_BTC_LEGACY = "«btc1_1»";
// ETH wallet for the grants programme
export const DONATION_ETH = "«eth2»";
export const BUILD_SHA = "«sha40»";
""", [("CRYPTO_WALLET", "«bc1q_1»"), ("CRYPTO_WALLET", "«btc1_1»"), ("CRYPTO_WALLET", "«eth2»")])

add("code-018", G, """# settings.py
DEBUG = False
SECRET_KEY = "«django_key»"
ALLOWED_HOSTS = ["app.example.com"]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.postgresql", "NAME": "app", "USER": "app",
                "PASSWORD": "pG7!vR2#qLm9", "HOST": "10.0.0.12", "PORT": "5432"}
}
EMAIL_HOST_USER = "no-reply@example.com"
""", [("GENERIC_SECRET", "«django_key»"), ("PASSWORD", "pG7!vR2#qLm9"), ("IP_ADDRESS", "10.0.0.12"),
      ("EMAIL", "no-reply@example.com")])

add("code-019", G, """func loadAWS() aws.Config {
	key := getenv("AWS_ACCESS_KEY_ID", "«ak3»")
	secret := getenv("AWS_SECRET_ACCESS_KEY", "«as3»")
	return aws.Config{Credentials: credentials.NewStaticCredentialsProvider(key, secret, "")}
}
""", [("AWS_ACCESS_KEY", "«ak3»"), ("AWS_SECRET_KEY", "«as3»")])

add("code-020", G, """#!/usr/bin/env bash
# release.sh
export GH_TOKEN=«gho1»
curl -s -H "Authorization: Bearer «sk_live_long»" https://api.stripe.com/v1/balance
curl -s https://api.openai.com/v1/models -H "Authorization: Bearer «oal2»"
""", [("GITHUB_TOKEN", "«gho1»"), ("STRIPE_KEY", "«sk_live_long»"), ("OPENAI_API_KEY", "«oal2»")])

add("code-021", G, """import jwt from "jsonwebtoken";

// captured from a mobile session, used to reproduce bug #2291
const SAMPLE = "«jwt8»";
console.log(jwt.decode(SAMPLE));
const CLIENT_SECRET = "«b64s1»";
""", [("JWT", "«jwt8»"), ("GENERIC_SECRET", "«b64s1»")])

add("code-022", G, """# conftest.py
@pytest.fixture
def patient():
    return Patient(name="Grace Kim", dob="1991-02-17", mrn="MRN-2049913",
                   nhs_number="«nhs_nosep»", address="310 Cedar Street, Austin, TX 78701")
""", [("PERSON", "Grace Kim"), ("DATE_OF_BIRTH", "1991-02-17"), ("MEDICAL_RECORD_NUMBER", "MRN-2049913"),
      ("UK_NHS", "«nhs_nosep»"), ("STREET_ADDRESS", "310 Cedar Street, Austin, TX 78701")])

add("code-023", G, """const slack = new App({
  token: "«xoxb3»",
  appToken: "«xapp1»",
  socketMode: true,
});
""", [("SLACK_TOKEN", "«xoxb3»"), ("SLACK_TOKEN", "«xapp1»")])

add("code-024", G, """# Pin dependencies; nothing sensitive here.
import uuid, hashlib

REQUEST_ID = uuid.UUID("123e4567-e89b-12d3-a456-426614174000")
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
API_KEY = os.environ["API_KEY"]
PASSWORD = os.getenv("DB_PASSWORD", "")
TIMEOUT = 30  # seconds
""", [])

# =====================================================================
# config
# =====================================================================
G = "config"
add("config-001", G, """# .env (production)
APP_ENV=production
DB_HOST=10.0.0.12
DB_USER=app
DB_PASSWORD=Winter2024!
STRIPE_SECRET_KEY=«sk_live3»
OPENAI_API_KEY=«oal3»
LOG_LEVEL=info
""", [("IP_ADDRESS", "10.0.0.12"), ("PASSWORD", "Winter2024!"), ("STRIPE_KEY", "«sk_live3»"), ("OPENAI_API_KEY", "«oal3»")])

add("config-002", G, """# docker-compose.yml
services:
  db:
    image: postgres:16.2
    environment:
      POSTGRES_USER: app
      POSTGRES_PASSWORD: "hunter2-Secure"
  cache:
    image: redis:7.2.4
    command: redis-server --requirepass R3disPa55word
  web:
    image: ghcr.io/perimeter/web:1.8.0
    ports: ["8080:8080"]
""", [("PASSWORD", "hunter2-Secure"), ("PASSWORD", "R3disPa55word")])

add("config-003", G, """apiVersion: v1
kind: Secret
metadata:
  name: ci-credentials
type: Opaque
stringData:
  GITHUB_TOKEN: «ghp2»
  SLACK_BOT_TOKEN: «xoxb4»
  API_TOKEN: "«hex40_2»"
""", [("GITHUB_TOKEN", "«ghp2»"), ("SLACK_TOKEN", "«xoxb4»"), ("GENERIC_SECRET", "«hex40_2»")])

add("config-004", G, """# ~/.aws/credentials
[default]
aws_access_key_id = «ak4»
aws_secret_access_key = «as4»

[deploy]
aws_access_key_id = «asia1»
aws_secret_access_key = «as5»
region = eu-west-1
""", [("AWS_ACCESS_KEY", "«ak4»"), ("AWS_SECRET_KEY", "«as4»"), ("AWS_ACCESS_KEY", "«asia1»"), ("AWS_SECRET_KEY", "«as5»")])

add("config-005", G, """{
  "type": "service_account",
  "project_id": "perimeter-demo-4821",
  "private_key": "«pem_p8_json»\\n",
  "token_uri": "https://oauth2.googleapis.com/token"
}""", [("PRIVATE_KEY", "«pem_p8_json»")])

add("config-006", G, """# /etc/dhcp/dhcpd.conf — reservations
host printer-3f { hardware ethernet 00:1A:2B:3C:4D:5E; fixed-address 10.20.30.40; }
host nas-01     { hardware ethernet b8:27:eb:45:9a:01; fixed-address 10.20.30.41; }
option domain-name-servers 192.0.2.53;
""", [("MAC_ADDRESS", "00:1A:2B:3C:4D:5E"), ("IP_ADDRESS", "10.20.30.40"), ("MAC_ADDRESS", "b8:27:eb:45:9a:01"),
      ("IP_ADDRESS", "10.20.30.41"), ("IP_ADDRESS", "192.0.2.53")])

add("config-007", G, """ConnectionStrings__Main=Server=tcp:sql-prod.internal,1433;Database=crm;User ID=crm_app;Password=Gr33n!Tea#2024;Encrypt=True;
MONGO_URL=mongodb+srv://reporter:Kx82mQpL7zT@cluster0.example.net/analytics?retryWrites=true
""", [("PASSWORD", "Gr33n!Tea#2024"), ("PASSWORD", "Kx82mQpL7zT")])

add("config-008", G, """{
  "maps": { "apiKey": "«gkey5»" },
  "alerts": { "slackWebhook": "«hook2»" },
  "support": { "email": "support@example.com", "phone": "+44 20 7946 0123" },
  "version": "3.14.1"
}""", [("GOOGLE_API_KEY", "«gkey5»"), ("SLACK_TOKEN", "«hook2»"), ("EMAIL", "support@example.com"),
       ("PHONE", "+44 20 7946 0123")])

add("config-009", G, """# settings.toml
[auth]
client_id = "perimeter-web"
client_secret = "«b64s2»"

[smtp]
host = "smtp.example.net"
username = "mailer@example.net"
password = "M4il!Relay-7731"
""", [("GENERIC_SECRET", "«b64s2»"), ("EMAIL", "mailer@example.net"), ("PASSWORD", "M4il!Relay-7731")])

add("config-010", G, """# ~/.ssh/id_ed25519 (copied into the repo by mistake)
«pem_ssh1»
""", [("PRIVATE_KEY", "«pem_ssh1»")])

add("config-011", G, """# terraform.tfvars
aws_access_key = "«ak5»"
aws_secret_key = "«as6»"
db_password    = "Vx9$Lp2!Qe7w"
admin_email    = "infra-admin@example.org"
allowed_ips    = ["203.0.113.50", "198.51.100.17"]
""", [("AWS_ACCESS_KEY", "«ak5»"), ("AWS_SECRET_KEY", "«as6»"), ("PASSWORD", "Vx9$Lp2!Qe7w"),
      ("EMAIL", "infra-admin@example.org"), ("IP_ADDRESS", "203.0.113.50"), ("IP_ADDRESS", "198.51.100.17")])

add("config-012", G, """# .github/workflows/release.yml
env:
  NPM_TOKEN: ${{ secrets.NPM_TOKEN }}
  OPENAI_API_KEY: ${{ secrets.OPENAI_API_KEY }}
  SENTRY_AUTH_TOKEN: "«hex64_1»"
jobs:
  release:
    runs-on: ubuntu-22.04
""", [("GENERIC_SECRET", "«hex64_1»")])

add("config-013", G, """# ~/.pgpass
db.internal:5432:app:app:S3cr3tPass
# .env.local
REDIS_URL=redis://:R3disPa55word@10.0.0.31:6379/0
""", [("PASSWORD", "S3cr3tPass"), ("PASSWORD", "R3disPa55word"), ("IP_ADDRESS", "10.0.0.31")])

add("config-014", G, """{"access_token": "«jwt4»", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "«b64s3»", "scope": "read:reports write:reports"}""",
    [("JWT", "«jwt4»"), ("GENERIC_SECRET", "«b64s3»")])

add("config-015", G, """# .env.example — copy to .env and fill in
DB_HOST=localhost
DB_PASSWORD=<your-password>
STRIPE_SECRET_KEY=sk_live_...
OPENAI_API_KEY=
GITHUB_TOKEN=${GITHUB_TOKEN}
SLACK_WEBHOOK_URL=https://hooks.slack.com/services/...
""", [])

add("config-016", G, """# Example from the AWS CLI documentation — do not use
[default]
aws_access_key_id = AKIAIOSFODNN7EXAMPLE
aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
region = us-west-2
""", [])  # AWS's documented example keys are not findings (as in both held-out sets).

add("config-017", G, """# ~/.config/gh/hosts.yml
github.com:
    user: perimeter-bot
    oauth_token: «gho1»
    git_protocol: https
# ~/.npmrc
//registry.npmjs.org/:_authToken=«hex32_1»
""", [("GITHUB_TOKEN", "«gho1»"), ("GENERIC_SECRET", "«hex32_1»")])

add("config-018", G, """# values.yaml (helm)
stripe:
  secretKey: «sk_live4»
  restrictedKey: «rk_live2»
google:
  apiKey: «gkey6»
openai:
  apiKey: «oap4»
""", [("STRIPE_KEY", "«sk_live4»"), ("STRIPE_KEY", "«rk_live2»"), ("GOOGLE_API_KEY", "«gkey6»"), ("OPENAI_API_KEY", "«oap4»")])

add("config-019", G, """apiVersion: v1
kind: Secret
metadata:
  name: edge-tls
type: kubernetes.io/tls
stringData:
  tls.key: |
    «pem_ec1_ind»
---
apiVersion: v1
kind: Service
spec:
  externalIPs: ["203.0.113.10", "2001:db8:abcd::42"]
""", [("PRIVATE_KEY", "«pem_ec1_ind»"), ("IP_ADDRESS", "203.0.113.10"), ("IP_ADDRESS", "2001:db8:abcd::42")])

add("config-020", G, """Router#show arp
Protocol  Address          Age (min)  Hardware Addr   Type   Interface
Internet  192.168.10.1            -   0019.e8a1.2b3c  ARPA   Vlan10
Internet  192.168.10.23          12   0050.56c0.0008  ARPA   Vlan10
""", [("IP_ADDRESS", "192.168.10.1"), ("MAC_ADDRESS", "0019.e8a1.2b3c"), ("IP_ADDRESS", "192.168.10.23"),
      ("MAC_ADDRESS", "0050.56c0.0008")])

add("config-021", G, """# application.properties
spring.datasource.url=jdbc:mysql://10.0.5.14:3306/orders
spring.datasource.username=orders
spring.datasource.password=Ord3rs!Prod#88
app.jwt.signing-secret=«hex64_2»
app.slack.webhook=«hook3»
""", [("IP_ADDRESS", "10.0.5.14"), ("PASSWORD", "Ord3rs!Prod#88"), ("GENERIC_SECRET", "«hex64_2»"), ("SLACK_TOKEN", "«hook3»")])

# =====================================================================
# form
# =====================================================================
G = "form"
add("form-001", G, """ONLINE REGISTRATION
Full name: Thomas Becker
Email: thomas.becker@example.net
Phone: +49 30 901820
Date of birth: 1979-11-23
Address: 14 Wren Street, Alder Bridge AV3 7QT
Marketing consent: No""",
    [("PERSON", "Thomas Becker"), ("EMAIL", "thomas.becker@example.net"), ("PHONE", "+49 30 901820"),
     ("DATE_OF_BIRTH", "1979-11-23"), ("STREET_ADDRESS", "14 Wren Street, Alder Bridge AV3 7QT")])

add("form-002", G, """NEW STARTER FORM — HR-07
Name: Aisha Khan
Date of birth: 30/04/1985
National Insurance number: AB123456C
Passport No: 533401372
Home address: 5 Kingfisher Way, Brookmere BM4 6TP
Emergency contact: Yusuf Khan, 07700 900334
Salary account: IBAN GB82 WEST 1234 5698 7654 32, BIC NWBKGB2L
Start date: 01/04/2024""",
    [("PERSON", "Aisha Khan"), ("DATE_OF_BIRTH", "30/04/1985"), ("UK_NINO", "AB123456C"), ("PASSPORT", "533401372"),
     ("STREET_ADDRESS", "5 Kingfisher Way, Brookmere BM4 6TP"), ("PERSON", "Yusuf Khan"), ("PHONE", "07700 900334"),
     ("IBAN", "GB82 WEST 1234 5698 7654 32"), ("SWIFT_BIC", "NWBKGB2L")])

add("form-003", G, """EMPLOYEE ONBOARDING (US)
Employee: Kevin Alvarez
SSN (no dashes): 523871946
DOB: 09/14/1988
Address: 4821 Maple Drive, Columbus, OH 43004
Phone: (614) 555-0163
Email: kevin.alvarez@example.com
Employee ID: 100482""",
    [("PERSON", "Kevin Alvarez"), ("US_SSN", "523871946"), ("DATE_OF_BIRTH", "09/14/1988"),
     ("STREET_ADDRESS", "4821 Maple Drive, Columbus, OH 43004"), ("PHONE", "(614) 555-0163"),
     ("EMAIL", "kevin.alvarez@example.com")])

add("form-004", G, """W-7 SUPPORTING DETAILS
Applicant: Lucía Fernández
ITIN (renewal): 900-70-0001
Foreign passport number: PAB458201
Date of birth: 12 August 1990
US mailing address: 310 Cedar Street, Austin, TX 78701""",
    [("PERSON", "Lucía Fernández"), ("US_ITIN", "900-70-0001"), ("PASSPORT", "PAB458201"),
     ("DATE_OF_BIRTH", "12 August 1990"), ("STREET_ADDRESS", "310 Cedar Street, Austin, TX 78701")])

add("form-005", G, """GP REGISTRATION
Full name: Mr Ibrahim Yilmaz
NHS number (if known): «nhs7»
Date of birth: 03/03/1975
Address: 19 Harbour View, Saltmarsh SM1 2QA
Existing medical conditions: asthma, hypertension
Telephone: 0117 496 0555""",
    [("PERSON", "Ibrahim Yilmaz"), ("UK_NHS", "«nhs7»"), ("DATE_OF_BIRTH", "03/03/1975"),
     ("STREET_ADDRESS", "19 Harbour View, Saltmarsh SM1 2QA"), ("MEDICAL_CONDITION", "asthma"),
     ("MEDICAL_CONDITION", "hypertension"), ("PHONE", "0117 496 0555")])

add("form-006", G, """CLAIM FORM — OUTPATIENT
Member name: Grace Kim
Member ID: HX-4471-220
Patient account / MRN: 20-771-0043
Diagnosis code (ICD-10): E11.9
Diagnosis: Type 2 diabetes mellitus
Treating provider: Dr Michael Chen
Provider phone: +1 617 555 0184""",
    [("PERSON", "Grace Kim"), ("MEDICAL_RECORD_NUMBER", "20-771-0043"), ("MEDICAL_CONDITION", "E11.9"),
     ("MEDICAL_CONDITION", "Type 2 diabetes mellitus"), ("PERSON", "Michael Chen"), ("PHONE", "+1 617 555 0184")])

add("form-007", G, """KYC — INDIVIDUAL
Name: Ravi Menon
Passport number: K8734521
Nationality: Indian
Withdrawal wallet (BTC): «btc1_2»
Withdrawal wallet (ETH): «eth3»
Email: ravi.menon@example.org
Source of funds: salary""",
    [("PERSON", "Ravi Menon"), ("PASSPORT", "K8734521"), ("CRYPTO_WALLET", "«btc1_2»"), ("CRYPTO_WALLET", "«eth3»"),
     ("EMAIL", "ravi.menon@example.org")])

add("form-008", G, """TENANCY APPLICATION
Applicant: Chloe Martin
Current address: 42 Beacon Hill Road, Ashcombe AS9 3LW
Previous address: 7 Chapel Lane, Wexley WX2 8PN
Employer phone: 0121 496 0845
Rent account: IBAN IE29 AIBK 9311 5212 3456 78, BIC AIBKIE2D
National Insurance no.: SK 90 55 77 C""",
    [("PERSON", "Chloe Martin"), ("STREET_ADDRESS", "42 Beacon Hill Road, Ashcombe AS9 3LW"),
     ("STREET_ADDRESS", "7 Chapel Lane, Wexley WX2 8PN"), ("PHONE", "0121 496 0845"),
     ("IBAN", "IE29 AIBK 9311 5212 3456 78"), ("SWIFT_BIC", "AIBKIE2D"), ("UK_NINO", "SK 90 55 77 C")])

add("form-009", G, """CONFERENCE REGISTRATION — DataSec Europe
Name: Dr Elodie Marchand
Email: elodie.marchand@example.org
Phone: +33 1 23 45 67 89
Badge type: Speaker
Dietary requirements: vegetarian
Invoice address: 90 Kingsbridge Road, Dunmore DN1 5AB""",
    [("PERSON", "Elodie Marchand"), ("EMAIL", "elodie.marchand@example.org"), ("PHONE", "+33 1 23 45 67 89"),
     ("STREET_ADDRESS", "90 Kingsbridge Road, Dunmore DN1 5AB")])

add("form-010", G, """CONSENT FORM 1 — PATIENT AGREEMENT TO INVESTIGATION OR TREATMENT
Patient name: Mia Schofield
DOB: 25/12/2001
Hospital number: 6610354
Proposed procedure: EEG with photic stimulation
Relevant conditions: epilepsy (G40.909)
Consultant: Dr Priya Raman""",
    [("PERSON", "Mia Schofield"), ("DATE_OF_BIRTH", "25/12/2001"), ("MEDICAL_RECORD_NUMBER", "6610354"),
     ("MEDICAL_CONDITION", "epilepsy"), ("MEDICAL_CONDITION", "G40.909"), ("PERSON", "Priya Raman")])

add("form-011", G, """BANK DETAILS CHANGE
Employee: Olusegun Adebayo
Employee no: E-10452
New IBAN: NL91 ABNA 0417 1643 00
BIC/SWIFT: ABNANL2A
Effective from: 01/05/2024
Signed: Olusegun Adebayo""",
    [("PERSON", "Olusegun Adebayo"), ("IBAN", "NL91 ABNA 0417 1643 00"), ("SWIFT_BIC", "ABNANL2A"), ("PERSON", "Olusegun Adebayo")])

add("form-012", G, """VISA APPLICATION — SECTION A
Full name: Mei Lin Tan
Date of birth: 1993-07-15
Passport No.: E7729314K
Home address: 221 Harbour Road, Port Ellery PE3 9RD
Email: meilin.tan@example.com
Mobile: +44 7700 900556""",
    [("PERSON", "Mei Lin Tan"), ("DATE_OF_BIRTH", "1993-07-15"), ("PASSPORT", "E7729314K"),
     ("STREET_ADDRESS", "221 Harbour Road, Port Ellery PE3 9RD"), ("EMAIL", "meilin.tan@example.com"),
     ("PHONE", "+44 7700 900556")])

add("form-013", G, """GYM MEMBERSHIP
Member: Jack Thompson
Card for monthly payments: 5105 1051 0510 5100
Mobile: 07700.900.145
Address: 3 Abbey Crescent, Millford MF1 1AA
Membership no.: GM-0045821""",
    [("PERSON", "Jack Thompson"), ("CREDIT_CARD", "5105 1051 0510 5100"), ("PHONE", "07700.900.145"),
     ("STREET_ADDRESS", "3 Abbey Crescent, Millford MF1 1AA")])

add("form-014", G, """FORM 1040 — WORKSHEET
Taxpayer: Ana Souza          ITIN: 945-81-2267
Spouse: Carlos Souza         SSN: 612-48-9930
Home address: 915 Oak Street, Newark, NJ 07102
Dependent: Beatriz Souza     SSN: 771-20-5563""",
    [("PERSON", "Ana Souza"), ("US_ITIN", "945-81-2267"), ("PERSON", "Carlos Souza"), ("US_SSN", "612-48-9930"),
     ("STREET_ADDRESS", "915 Oak Street, Newark, NJ 07102"), ("PERSON", "Beatriz Souza"), ("US_SSN", "771-20-5563")])

add("form-015", G, """PRE-EMPLOYMENT HEALTH QUESTIONNAIRE
Name: Daniel Reyes
Date of birth: 02/05/1990
Do you have any of the following? Asthma [ ]  Diabetes [ ]  Epilepsy [ ]
Other conditions (please specify): depression, well controlled on medication
Occupational health contact: oh-team@example.com""",
    [("PERSON", "Daniel Reyes"), ("DATE_OF_BIRTH", "02/05/1990"), ("MEDICAL_CONDITION", "depression"),
     ("EMAIL", "oh-team@example.com")])

add("form-016", G, """CONTACT US
Your name: Wiktoria Zielińska
Email: w.zielinska(at)example(dot)net
Phone: 020-7946-0477
Message: Please call me back about order 1000023999. My account password is Sunflower!88 if you need to log in.""",
    [("PERSON", "Wiktoria Zielińska"), ("EMAIL", "w.zielinska(at)example(dot)net"), ("PHONE", "020-7946-0477"),
     ("PASSWORD", "Sunflower!88")])

add("form-017", G, """RIGHT TO WORK — EMPLOYER CHECKLIST
Employee name: Kofi Mensah
Document seen: passport, number 120382749, expires 2033-02-11
NINO: CE 45 66 12 A
Checked by: Harriet Cole, HR Business Partner""",
    [("PERSON", "Kofi Mensah"), ("PASSPORT", "120382749"), ("UK_NINO", "CE 45 66 12 A"), ("PERSON", "Harriet Cole")])

# =====================================================================
# email
# =====================================================================
G = "email"
add("email-001", G, """From: Priya Sharma <priya.sharma@example.com>
To: Owen Pritchard <owen.pritchard@example.org>
Subject: Contract for the Leeds office
Date: Tue, 12 Mar 2024 09:41:07 +0000

Dear Owen Pritchard,

Please find the signed contract attached. If anything needs changing, call me on 0113 496 0123 before Friday.

Best regards,
Priya Sharma
Head of Operations""",
    [("PERSON", "Priya Sharma"), ("EMAIL", "priya.sharma@example.com"), ("PERSON", "Owen Pritchard"),
     ("EMAIL", "owen.pritchard@example.org"), ("PERSON", "Owen Pritchard"), ("PHONE", "0113 496 0123"),
     ("PERSON", "Priya Sharma")])

add("email-002", G, """From: payroll@example.com
To: Marcus Bell <marcus.bell@example.net>
Subject: Your P60 for 2023/24

Hi Marcus Bell,

Your P60 is attached. The National Insurance number on file is JM 62 48 37 B and your salary is paid to GB82 WEST 1234 5698 7654 32.
If either is wrong, reply to this email.

Payroll Team""",
    [("EMAIL", "payroll@example.com"), ("PERSON", "Marcus Bell"), ("EMAIL", "marcus.bell@example.net"),
     ("PERSON", "Marcus Bell"), ("UK_NINO", "JM 62 48 37 B"), ("IBAN", "GB82 WEST 1234 5698 7654 32")])

add("email-003", G, """From: accounts@example.net
To: Daniel Okafor <d.okafor@example.org>
Subject: Updated payment details — invoice INV-2024-0318

Hello Daniel Okafor,

Please pay invoice INV-2024-0318 (€3,250.00) to our new account:
IBAN: FR14 2004 1010 0505 0001 3M02 606
BIC: BNPAFRPPXXX

Kind regards,
Camille Laurent, Accounts Receivable""",
    [("EMAIL", "accounts@example.net"), ("PERSON", "Daniel Okafor"), ("EMAIL", "d.okafor@example.org"),
     ("PERSON", "Daniel Okafor"), ("IBAN", "FR14 2004 1010 0505 0001 3M02 606"), ("SWIFT_BIC", "BNPAFRPPXXX"),
     ("PERSON", "Camille Laurent")])

add("email-004", G, """From: Dr Helen Marsh <h.marsh@elmfield-surgery.example>
To: referrals@example.org
Subject: Urgent referral — Mr Gareth Llewellyn

Patient: Mr Gareth Llewellyn, DOB 23/11/1949, NHS «nhs2»
Worsening COPD with two admissions this winter; also type 2 diabetes. Please expedite respiratory review.

Dr Helen Marsh, GP""",
    [("PERSON", "Helen Marsh"), ("EMAIL", "h.marsh@elmfield-surgery.example"), ("EMAIL", "referrals@example.org"),
     ("PERSON", "Gareth Llewellyn"), ("PERSON", "Gareth Llewellyn"), ("DATE_OF_BIRTH", "23/11/1949"), ("UK_NHS", "«nhs2»"),
     ("MEDICAL_CONDITION", "COPD"), ("MEDICAL_CONDITION", "type 2 diabetes"), ("PERSON", "Helen Marsh")])

add("email-005", G, """From: security@example.com
To: aiko.tanaka@example.net
Subject: New sign-in to your account

We noticed a new sign-in from 192.0.2.44 (device MAC 00:1A:2B:3C:4D:5E) at 02:14 UTC.
Previous sign-in: 2001:db8:1f70::999:de8:7648:6e8.
If this wasn't you, reset your password and contact security@example.com.""",
    [("EMAIL", "security@example.com"), ("EMAIL", "aiko.tanaka@example.net"), ("IP_ADDRESS", "192.0.2.44"),
     ("MAC_ADDRESS", "00:1A:2B:3C:4D:5E"), ("IP_ADDRESS", "2001:db8:1f70::999:de8:7648:6e8"), ("EMAIL", "security@example.com")])

add("email-006", G, """From: Li Wei <li.wei@example.com>
To: platform-team@example.com
Subject: creds for the migration job

Hi all, for tonight's migration use:
aws_access_key_id=«ak6»
aws_secret_access_key=«as7»
DB password: Migr8-Night!2024
I'll rotate everything tomorrow morning.
Li Wei""",
    [("PERSON", "Li Wei"), ("EMAIL", "li.wei@example.com"), ("EMAIL", "platform-team@example.com"),
     ("AWS_ACCESS_KEY", "«ak6»"), ("AWS_SECRET_KEY", "«as7»"), ("PASSWORD", "Migr8-Night!2024"), ("PERSON", "Li Wei")])

add("email-007", G, """From: recruitment@example.org
To: Mei Lin Tan <meilin.tan@example.com>
Subject: Pre-employment checks

Dear Mei Lin Tan,

Thank you for sending your documents. We have recorded your passport number as E7729314K and your date of birth as 15 July 1993.
Please also send proof of address for 221 Harbour Road, Port Ellery PE3 9RD.

Recruitment Team""",
    [("EMAIL", "recruitment@example.org"), ("PERSON", "Mei Lin Tan"), ("EMAIL", "meilin.tan@example.com"),
     ("PERSON", "Mei Lin Tan"), ("PASSPORT", "E7729314K"), ("DATE_OF_BIRTH", "15 July 1993"),
     ("STREET_ADDRESS", "221 Harbour Road, Port Ellery PE3 9RD")])

add("email-008", G, """From: no-reply@exchange.example
To: ravi.menon@example.org
Subject: Withdrawal confirmation

Your withdrawal of 1.25 ETH to wallet «eth3» has been sent.
Your BTC withdrawal address is still set to «bc1q_2».
Transaction hash: 0x«sha64»""",
    [("EMAIL", "no-reply@exchange.example"), ("EMAIL", "ravi.menon@example.org"), ("CRYPTO_WALLET", "«eth3»"),
     ("CRYPTO_WALLET", "«bc1q_2»")])

add("email-009", G, """From: Jean Smith <jean.smith@example.org>
To: events@example.net
Subject: Fwd: speaker contacts

Forwarding as requested — please don't publish these in the programme:
- Halina Nowak: halina dot nowak at example dot com
- Marcus Bell: m.bell [at] example [dot] net
- Fatima Zahra: fatima.zahra@example.com, +44 20 7946 0882""",
    [("PERSON", "Jean Smith"), ("EMAIL", "jean.smith@example.org"), ("EMAIL", "events@example.net"),
     ("PERSON", "Halina Nowak"), ("EMAIL", "halina dot nowak at example dot com"), ("PERSON", "Marcus Bell"),
     ("EMAIL", "m.bell [at] example [dot] net"), ("PERSON", "Fatima Zahra"), ("EMAIL", "fatima.zahra@example.com"),
     ("PHONE", "+44 20 7946 0882")])

add("email-010", G, """From: ops-robot@example.com
To: Tomasz Zielinski <t.zielinski@example.org>
Subject: Your new deploy key

Here is the key for the staging deploy user. Store it in your keychain and delete this email.

«pem_rsa2»

Fingerprint: SHA256:«b64s4»""",
    [("EMAIL", "ops-robot@example.com"), ("PERSON", "Tomasz Zielinski"), ("EMAIL", "t.zielinski@example.org"),
     ("PRIVATE_KEY", "«pem_rsa2»")])

add("email-011", G, """From: Sarah Johnson <sarah.johnson@example.com>
To: contractors@example.com
Subject: repo access

Use this fine-grained token to clone the docs repo until your accounts are set up:
«ghpat2»
It's read-only and expires on 30/06/2024.
Sarah Johnson""",
    [("PERSON", "Sarah Johnson"), ("EMAIL", "sarah.johnson@example.com"), ("EMAIL", "contractors@example.com"),
     ("GITHUB_TOKEN", "«ghpat2»"), ("PERSON", "Sarah Johnson")])

add("email-012", G, """From: login@example.com
To: chloe.martin@example.com
Subject: Your sign-in link

Click to sign in (valid for 15 minutes):
https://app.example.com/auth/magic?token=«jwt5»

If you didn't request this, ignore this email.""",
    [("EMAIL", "login@example.com"), ("EMAIL", "chloe.martin@example.com"), ("JWT", "«jwt5»")])

add("email-013", G, """From: Kevin Alvarez <kevin.alvarez@example.com>
To: web-agency@example.net
Subject: Re: store locator

The key we're using on the site is «gkey7» — it's restricted to *.example.com referrers, but please swap in your own for the staging build.
Call me on (614) 555-0163 if it doesn't work.""",
    [("PERSON", "Kevin Alvarez"), ("EMAIL", "kevin.alvarez@example.com"), ("EMAIL", "web-agency@example.net"),
     ("GOOGLE_API_KEY", "«gkey7»"), ("PHONE", "(614) 555-0163")])

add("email-014", G, """From: hr@example.com
To: Ana Souza <ana.souza@example.net>
Subject: W-4 / tax records

Dear Ana Souza,
Our records show ITIN 945-81-2267 for you and SSN 612-48-9930 for your spouse, Carlos Souza. Your updated ITIN (912-70-4455) will be used from the next payroll run.
HR Operations""",
    [("EMAIL", "hr@example.com"), ("PERSON", "Ana Souza"), ("EMAIL", "ana.souza@example.net"), ("PERSON", "Ana Souza"),
     ("US_ITIN", "945-81-2267"), ("US_SSN", "612-48-9930"), ("PERSON", "Carlos Souza"), ("US_ITIN", "912-70-4455")])

add("email-015", G, """From: secret-scanning@example.com
To: backend-team@example.com
Subject: [Alert] Slack user token found in perimeter/web@3f9e2a1

A Slack user token was found in src/notify.js line 12:
    const SLACK_USER_TOKEN = "«xoxp1»";
and an incoming webhook in .env.staging:
    SLACK_WEBHOOK=«hook4»
Both have been revoked automatically.""",
    [("EMAIL", "secret-scanning@example.com"), ("EMAIL", "backend-team@example.com"), ("SLACK_TOKEN", "«xoxp1»"),
     ("SLACK_TOKEN", "«hook4»")])

add("email-016", G, """From: Emily Carter <emily.carter@example.com>
To: deliveries@example.net
Subject: Change of delivery address

Hello,
From next week please deliver to 1600 Elm Avenue, Springfield, IL 62704 rather than 88 Lakeshore Boulevard, Chicago, IL 60601.
My phone is +1-312-555-0177 if the driver needs to call.
Thanks,
Emily Carter""",
    [("PERSON", "Emily Carter"), ("EMAIL", "emily.carter@example.com"), ("EMAIL", "deliveries@example.net"),
     ("STREET_ADDRESS", "1600 Elm Avenue, Springfield, IL 62704"), ("STREET_ADDRESS", "88 Lakeshore Boulevard, Chicago, IL 60601"),
     ("PHONE", "+1-312-555-0177"), ("PERSON", "Emily Carter")])

add("email-017", G, """From: billing-alerts@example.com
To: finance@example.org
Subject: API key in invoice notes

The notes field of invoice INV-2024-0702 contains what looks like a live key: «sk_live5»
and a test key «sk_test1». The OpenAI project key «oap5» was in the same note.
Please remove them and rotate.""",
    [("EMAIL", "billing-alerts@example.com"), ("EMAIL", "finance@example.org"), ("STRIPE_KEY", "«sk_live5»"),
     ("STRIPE_KEY", "«sk_test1»"), ("OPENAI_API_KEY", "«oap5»")])

add("email-018", G, """From: Grace Adeyemi <grace.adeyemi@example.net>
To: patient-services@example.org
Subject: Appointment letter

Hello, I received a letter for the wrong patient. My details are: Grace Adeyemi, born on 4 April 1962, hospital number 4471921, MRN: AV-0048213.
The letter was about hypertension follow-up but I'm being treated for asthma. Please correct your records.""",
    [("PERSON", "Grace Adeyemi"), ("EMAIL", "grace.adeyemi@example.net"), ("EMAIL", "patient-services@example.org"),
     ("PERSON", "Grace Adeyemi"), ("DATE_OF_BIRTH", "4 April 1962"), ("MEDICAL_RECORD_NUMBER", "4471921"),
     ("MEDICAL_RECORD_NUMBER", "AV-0048213"), ("MEDICAL_CONDITION", "hypertension"), ("MEDICAL_CONDITION", "asthma")])

# =====================================================================
# finance
# =====================================================================
G = "finance"
add("fin-001", G, """PAYMENT INSTRUCTION
Beneficiary: Jürgen Weber
Beneficiary address: 17 Castle Street, Alder Bridge AV1 2DF
Bank: Deutsche Bank, Frankfurt
IBAN: DE89370400440532013000
SWIFT/BIC: DEUTDEFF
Amount: EUR 12,400.00
Reference: PO-2024-00871""",
    [("PERSON", "Jürgen Weber"), ("STREET_ADDRESS", "17 Castle Street, Alder Bridge AV1 2DF"),
     ("IBAN", "DE89370400440532013000"), ("SWIFT_BIC", "DEUTDEFF")])

add("fin-002", G, """INVOICE INV-2024-0318
Billed to: Priya Sharma, 14 Wren Street, Alder Bridge AV3 7QT
VAT reg no: GB 123 4567 89
Item: Annual support plan ........ £1,200.00
VAT (20%) ........................ £240.00
Total ............................ £1,440.00
Paid by card 4012 8888 8888 1881 on 12/03/2024 (auth code 083416)""",
    [("PERSON", "Priya Sharma"), ("STREET_ADDRESS", "14 Wren Street, Alder Bridge AV3 7QT"),
     ("CREDIT_CARD", "4012 8888 8888 1881")])

add("fin-003", G, """CRYPTO INVOICE #C-20931
Amount due: 0.0421 BTC (≈ £2,100.00)
Pay to: «btc3_1»
Alternative (SegWit): «bc1q_3»
Alternative (Taproot): «bc1p_1»
Invoice expires in 30 minutes.""",
    [("CRYPTO_WALLET", "«btc3_1»"), ("CRYPTO_WALLET", "«bc1q_3»"), ("CRYPTO_WALLET", "«bc1p_1»")])

add("fin-004", G, """OUTGOING WIRE — USD
Beneficiary: Kevin Alvarez
Beneficiary address: 4821 Maple Drive, Columbus, OH 43004
Beneficiary bank SWIFT: CHASUS33
ABA routing: 021000021   Account: 000123456789
Intermediary: none
Purpose: consultancy fees, March""",
    [("PERSON", "Kevin Alvarez"), ("STREET_ADDRESS", "4821 Maple Drive, Columbus, OH 43004"), ("SWIFT_BIC", "CHASUS33")])

add("fin-005", G, """SEPA BATCH 2024-03-28 (5 payments)
1. ES9121000418450200051332  CAIXESBB     EUR   310.00
2. IT60X0542811101000000123456  BCITITMM   EUR 1,020.50
3. BE68539007547034          KREDBEBB     EUR    75.00
4. CH9300762011623852957     UBSWCHZH80A  CHF   640.00
5. AT611904300234573201      BKAUATWW     EUR 2,400.00
Batch ref: SEPA-0328-0005""",
    [("IBAN", "ES9121000418450200051332"), ("SWIFT_BIC", "CAIXESBB"), ("IBAN", "IT60X0542811101000000123456"),
     ("SWIFT_BIC", "BCITITMM"), ("IBAN", "BE68539007547034"), ("SWIFT_BIC", "KREDBEBB"),
     ("IBAN", "CH9300762011623852957"), ("SWIFT_BIC", "UBSWCHZH80A"), ("IBAN", "AT611904300234573201"),
     ("SWIFT_BIC", "BKAUATWW")])

add("fin-006", G, """CARD STATEMENT — March 2024
Card: **** **** **** 1111
03/03  Coffee House Ltd           £4.20
05/03  Online Books               £18.99
09/03  Refund to card 6011 1111 1111 1117   -£18.99
Statement ref: ST-88213-0324  Minimum payment: £25.00""",
    [("CREDIT_CARD", "6011 1111 1111 1117")])

add("fin-007", G, """1099-NEC REMITTANCE SUMMARY
Payee: Lucía Fernández   TIN (ITIN): 900-70-0001
Payee: Marcus Bell       TIN (ITIN): 912-78-1234
Payee: James Carter      TIN (SSN): 401-63-2290
Payer EIN: 12-3456789""",
    [("PERSON", "Lucía Fernández"), ("US_ITIN", "900-70-0001"), ("PERSON", "Marcus Bell"), ("US_ITIN", "912-78-1234"),
     ("PERSON", "James Carter"), ("US_SSN", "401-63-2290")])

add("fin-008", G, """POST /v1/charges  (payment-gateway.log)
Authorization: Bearer «sk_test2»
amount=4999&currency=gbp&source[number]=4111 1111-1111 1111&source[exp_month]=09&source[exp_year]=2027&source[cvc]=123
client_ip=203.0.113.88 request_id=req_9b2f6c1e3d4a""",
    [("STRIPE_KEY", "«sk_test2»"), ("CREDIT_CARD", "4111 1111-1111 1111"), ("IP_ADDRESS", "203.0.113.88")])

add("fin-009", G, """EXPENSE REPORT — Q1
Employee: Amira Haddad
Corporate card: 3782 822463 10005
14/02  Train London–Leeds    £86.40
15/02  Hotel, 2 nights       £238.00
Approved by: Samuel Osei""",
    [("PERSON", "Amira Haddad"), ("CREDIT_CARD", "3782 822463 10005"), ("PERSON", "Samuel Osei")])

add("fin-010", G, """REFUND FORM
Customer: Halina Nowak
Refund to IBAN: GB82 WEST 1234 5698 7654 32
(The IBAN first supplied, GB83 WEST 1234 5698 7654 32, failed validation and was not used.)
Amount: £149.00   Case: RF-2024-1182""",
    [("PERSON", "Halina Nowak"), ("IBAN", "GB82 WEST 1234 5698 7654 32")])

add("fin-011", G, """PAYROLL EXPORT (UK) — March 2024
EmpNo,Name,NINO,TaxCode,Gross
10452,Olusegun Adebayo,PR 31 24 87 B,1257L,3850.00
10453,Aisha Khan,AB123456C,1257L,4120.00
10454,Harriet Cole,YH210955C,BR,2210.50""",
    [("PERSON", "Olusegun Adebayo"), ("UK_NINO", "PR 31 24 87 B"), ("PERSON", "Aisha Khan"), ("UK_NINO", "AB123456C"),
     ("PERSON", "Harriet Cole"), ("UK_NINO", "YH210955C")])

add("fin-012", G, """OTC TRADE CONFIRMATION
Counterparty: Ravi Menon
Sell 12.5 ETH @ 2,950.00 USDT
Counterparty ETH wallet: «eth4»
Our settlement wallet: «eth_lower»
Trade id: OTC-000918""",
    [("PERSON", "Ravi Menon"), ("CRYPTO_WALLET", "«eth4»"), ("CRYPTO_WALLET", "«eth_lower»")])

add("fin-013", G, """SUPPLIER BANK CHANGE REQUEST
Supplier: Northwind Components Ltd
Contact: Camille Laurent, +33 1 23 45 67 89
Old: IBAN FR1420041010050500013M02606, BIC BNPAFRPP
New: IBAN DE89 3704 0044 0532 0130 00, BIC DEUTDEFFXXX
Verified by call-back on 14/03/2024 — yes""",
    [("PERSON", "Camille Laurent"), ("PHONE", "+33 1 23 45 67 89"), ("IBAN", "FR1420041010050500013M02606"),
     ("SWIFT_BIC", "BNPAFRPP"), ("IBAN", "DE89 3704 0044 0532 0130 00"), ("SWIFT_BIC", "DEUTDEFFXXX")])

add("fin-014", G, """INVOICE 2024-118 — Oakfield Studio
To: Jack Thompson, 3 Abbey Crescent, Millford MF1 1AA
Questions: accounts@oakfield.example or 0131 496 0612
Pay by card online or by transfer to GB82WEST12345698765432 (BIC NWBKGB2LXXX).
Card on file: 3530 1113 3330 0000""",
    [("PERSON", "Jack Thompson"), ("STREET_ADDRESS", "3 Abbey Crescent, Millford MF1 1AA"),
     ("EMAIL", "accounts@oakfield.example"), ("PHONE", "0131 496 0612"), ("IBAN", "GB82WEST12345698765432"),
     ("SWIFT_BIC", "NWBKGB2LXXX"), ("CREDIT_CARD", "3530 1113 3330 0000")])

add("fin-015", G, """STANDING ORDER SET-UP
Payer: Ahmed Siddiqui, 61 Rosewood Avenue, Kestrel Vale KV4 8NS
Payer tel.: 0113 496 0642
Pay to: IE29AIBK93115212345678 (AIBKIE2D)
Amount: €250.00 monthly from 01/06/2024""",
    [("PERSON", "Ahmed Siddiqui"), ("STREET_ADDRESS", "61 Rosewood Avenue, Kestrel Vale KV4 8NS"),
     ("PHONE", "0113 496 0642"), ("IBAN", "IE29AIBK93115212345678"), ("SWIFT_BIC", "AIBKIE2D")])

add("fin-016", G, """CHARGEBACK NOTICE
Card: 5555-5555-5555-4444   Amount: $212.40   Reason code 10.4
Cardholder: Emily Carter, 88 Lakeshore Boulevard, Chicago, IL 60601
Merchant order ref: 4111111111111112 (16-digit order id — not a card)""",
    [("CREDIT_CARD", "5555-5555-5555-4444"), ("PERSON", "Emily Carter"),
     ("STREET_ADDRESS", "88 Lakeshore Boulevard, Chicago, IL 60601")])

add("ticket-023", "support_ticket", """Ticket #51877 — SSL setup
Customer attached the wrong file; instead of the CSR they uploaded their private key:
«pem_p8_1»
Attachment deleted from the ticket; advised the customer (Harriet Cole) to generate a new key pair and reissue the certificate.""",
    [("PRIVATE_KEY", "«pem_p8_1»"), ("PERSON", "Harriet Cole")])

add("code-025", "code", """// firebase.js
const firebaseConfig = {
  apiKey: "«gkey9»",
  authDomain: "perimeter-demo.firebaseapp.com",
  projectId: "perimeter-demo",
  appId: "1:000000000000:web:0a1b2c3d4e5f",
};
""", [("GOOGLE_API_KEY", "«gkey9»")])

add("code-026", "code", """func TestVerifyES256(t *testing.T) {
	const keyPEM = `«pem_ec2»`
	key, err := jwt.ParseECPrivateKeyFromPEM([]byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	_ = key
}
""", [("PRIVATE_KEY", "«pem_ec2»")])

add("chat-020", "chat_log", """[12:01] qa-team: repro for the 401 on the dashboard — cookie session=«jwt7»
[12:03] frontend-dev: works for me with that. is the maps key right in your build? should be «gkey8»
[12:04] qa-team: ah no, I had an old one. fixed""",
    [("JWT", "«jwt7»"), ("GOOGLE_API_KEY", "«gkey8»")])

add("fin-017", "finance", """OPEN BANKING — PAYMENT INITIATION LOG
POST /open-banking/v3.1/pisp/domestic-payments
Authorization: Bearer «jwt6»
x-fapi-customer-ip-address: 198.51.100.61
CreditorAccount: {"SchemeName": "UK.OBIE.IBAN", "Identification": "GB82WEST12345698765432", "Name": "Oakfield Studio"}
InstructedAmount: 420.00 GBP""",
    [("JWT", "«jwt6»"), ("IP_ADDRESS", "198.51.100.61"), ("IBAN", "GB82WEST12345698765432")])

add("fin-018", "finance", """BACS BUREAU CONNECTION (payroll submissions)
SFTP host: 203.0.113.140  user: bureau-0412
Key passphrase: Payr0ll-Key#2024
Private key:
«pem_rsa3»
Submission window: 06:00–22:30, processing day 2.""",
    [("IP_ADDRESS", "203.0.113.140"), ("PASSWORD", "Payr0ll-Key#2024"), ("PRIVATE_KEY", "«pem_rsa3»")])

add("config-022", "config", """# /etc/mqtt-agent/config.yaml
broker: mqtts://192.0.2.150:8883
client_id: device-0042
auth:
  jwt: «jwt9»
  refresh_secret: «hex32_2»
interface_mac: 02:42:ac:11:00:02
""", [("IP_ADDRESS", "192.0.2.150"), ("JWT", "«jwt9»"), ("GENERIC_SECRET", "«hex32_2»"), ("MAC_ADDRESS", "02:42:ac:11:00:02")])

# =====================================================================
# negative (hard negatives: nothing here should be reported)
# =====================================================================
G = "negative"
NEG = [
"Order #4111111111111112 has shipped. Your order number 1000023456 will arrive on Thursday between 08:00 and 12:00.",
"Validator test: 4111 1111 1111 1112 and 5555 5555 5555 4445 must both be rejected because they fail the Luhn check.",
"Now in paperback: ISBN 978-0-306-40615-7 (ISBN 9780306406157, ISBN-10 0-306-40615-2). RRP £24.99, 368 pages.",
"Request 123e4567-e89b-12d3-a456-426614174000 failed with status 503; the retry (id 9b2f6c1e-3d4a-4f7b-8c2d-1e0f9a8b7c6d) succeeded after 1.8 s.",
"Fixed in commit 9fceb02d0ae598e95dc970b74767f19372d61af8 (short 9fceb02), which reverts a1b2c3d and cherry-picks «sha40».",
"Release notes: agent upgraded to 1.2.3.4; tested on Windows v10.0.19041.1, Python 3.11.7 and Node v20.11.1; schema version 2024.03.14.",
"Reject these in the IBAN test suite: GB83WEST12345698765432 and DE88370400440532013000 both have wrong check digits, and XX00 0000 0000 0000 is only the format template.",
"Invalid SSNs for the validator suite: 000-12-3456 (area 000), 666-45-6789 (area 666), 123-00-4567 (group 00), 123-45-0000 (serial 0000) and 912-34-5678 (9xx area, not an ITIN group).",
"The NHS number «nhs_bad1» failed the modulus 11 check, as did «nhs_bad2»; please re-key both from the referral letter.",
"These are not valid National Insurance numbers: QQ123456C (the format example), BG123456A, GB123456A, NK123456D and TN312286E — the prefixes are never issued.",
"The meeting is on 14/03/2024 at 14:30 in Room E11 on floor 9. Please bring a printed copy of the Annual Report.",
"Boarding from Gate A12 at 06:45, seat J45, flight BA0117 to Frankfurt. Connection via Terminal 2, stand C50.",
"Q3 revenue rose 12.5% to £1,234,567.89; operating margin 8.3%; EPS $4.11; the share price closed at 4,111.11p.",
"Product codes: SKU-4821-AB, P/N 5105-1051-05, model XR-2000, batch 2024-03-14-0001, lot 00912837-B.",
"The New York Stock Exchange closed early today. The Customer Service Team will publish the Annual Report after the Bank Holiday Monday.",
"## Configuration\nSet `password=<your-password>` in your local `.env` and never commit it.\nIn CI the value comes from the secret store: PASSWORD=${DB_PASSWORD}.",
"db:\n  user: app\n  password: ********\n  host: ${DB_HOST}\n  port: 5432",
"token = \"aaaaaaaaaaaaaaaaaaaa\"\napi_key = \"0000000000000000\"\nsecret = \"xxxxxxxxxxxxxxxxxxxxxxxx\"\nclient_secret = \"REPLACE_ME\"",
"Documentation lives at example.com and www.example.org; mirrors are at docs.example.net/guide and example.co.uk/help.",
"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  empty.txt\n«sha64»  release-1.8.0.tar.gz",
"std::vector<std::string> names; auto it = ns::detail::find(names); // C++ scope resolution, e.g. a::b::c, is not IPv6",
"Server public key (safe to share):\n«pub_pem»",
"CA bundle entry:\n«cert_pem»",
"Install scikit-learn (import sklearn). The legacy 'sk-learn' alias was removed; see task-1234 and risk-register item RK-12.",
"News: the Great Depression of the 1930s; an asthma charity fun run raised £12,000; market report says hypertension drug sales rose 4% last quarter.",
"The project was born on 2 May 2019 as a weekend hack, and version 1.0 shipped on 14/03/2020.",
"Timestamps: 12:34:56 and 23:59:59.999; aspect ratio 16:9; coordinates 51.5074, -0.1278; score 3-1.",
"Invalid addresses rejected by the parser: 999.10.0.1, 256.256.256.256 and 192.168.1 (truncated).",
"Follow us @perimeter_dev! Types come from @types/node, and the Flask handler is decorated with @app.route('/login').",
"ATTENTION CUSTOMER: HOSPITAL BUSINESS HOURS WILL CHANGE FROM MONDAY. PLEASE CALL AHEAD.",
"Forgot password? Your password must be at least 12 characters and include a number. The reset token expires after 30 minutes.",
"Model limits: context window 128000 tokens, max_tokens=4096, temperature=0.7, top_p=0.95.",
"<img src=\"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==\" alt=\"pixel\">",
"\"node_modules/left-pad\": {\"version\": \"1.3.0\", \"integrity\": \"sha512-«sri»\"}",
"docker pull ghcr.io/perimeter/agent@sha256:«sha64»",
"Segfault at address 0x7ffee4b2c9a8; magic 0xDEADBEEF; mask 0xFFFF0000; flags 0x1F.",
"These fail their checksums (last character altered): 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3 and bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdr.",
"curl https://api.example.com/v1/items \\\n  -H \"Authorization: Bearer <token>\" \\\n  -H \"X-API-Key: YOUR_API_KEY_HERE\"\nexport OPENAI_API_KEY=\"sk-...\"",
"Tokens are truncated for display: eyJhbGciOiJIUzI1NiJ9… (header only). Full tokens are never written to the log.",
"The Passport Photo Booth on Level 2 is open 09:00–17:00. The Passport Office is closed on 25/12 and 26/12.",
"Tracking number 1Z999AA10123456784; Royal Mail reference JD000123456GB; consignment 00340434161094042557.",
"Dear Customer,\n\nThank you for your patience while we upgraded our systems.\n\nKind regards,\nThe Billing Team",
"Meet outside Victoria Station by the Ford Focus advert, then walk to the Grand Canyon exhibition at the Science Museum.",
"Delivery point: Room 14, Building 3, next to Platform 9. Overflow parking at Gate 14, Terminal 5.",
"jobs:\n  notify:\n    steps:\n      - run: ./notify.sh\n        env:\n          GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}\n          SLACK_WEBHOOK_URL: ${{ secrets.SLACK_WEBHOOK }}\n          STRIPE_KEY: ${STRIPE_KEY}",
"Redacted for privacy: phone 07700 900***, card **** **** **** 4242, SSN XXX-XX-XXXX, email j***@e******.com.",
"Spreadsheet cells I10:J45 hold the totals; clause F32.1 of the lease covers repairs; see appendix C50 and form E11.",
"An AWS access key ID is AKIA followed by 16 characters and the secret is 40 characters. Never paste either into a ticket.",
"Brand palette: #1A2B3C, #FFFFFF, #00A1B2. Grid: 12 columns, 24 px gutter. Icon set v3.2.1.",
"Lorem ipsum dolor sit amet, consectetur adipiscing elit. Sed do eiusmod tempor incididunt ut labore et dolore magna aliqua, 2024-11-23.",
"Weather station WS-0048213 reported 14.3 °C, humidity 82%, pressure 1013.25 hPa at 06:00.",
"Parse error in config line 221: unexpected token near 'Harbour'. Expected one of: key, value, section.",
"The Wi-Fi password is on the whiteboard in the kitchen; ask reception if you can't find it.",
"Ratios 1:2:3:4:5:6 and the timecode 10:12:33:04 are not hardware addresses; neither is the build tag 2024-03-14-AB-CD.",
"Sprint 14 retrospective: velocity 42 points, 3 bugs carried over, next planning 2024-04-02 10:00.",
]
for i, t in enumerate(NEG, 1):
    add(f"neg-{i:03d}", G, t, [])

# =====================================================================
# output + checks
# =====================================================================
import collections
ids = [r["id"] for r in RECS]
assert len(ids) == len(set(ids)), [i for i, c in collections.Counter(ids).items() if c > 1]
out = sys.argv[1]
with open(out, "w", encoding="utf-8") as f:
    for r in RECS:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
print("records", len(RECS))
