"""Pools of realistic fake values, in French and English: first and last names, cities with their postcodes, streets.

Large enough that fake people rarely share a name by chance (about 200 first names by 200 last names per
language), and plain data so that the SQL rules can embed them as array constants.
"""

from __future__ import annotations

from dataclasses import dataclass

LOCALES = ("fr", "en", "mixed")
DEFAULT_LOCALE = "fr"

_FR_FIRST = """
Adam Adèle Adrien Agathe Agnès Alain Albane Albert Alexandra Alexandre Alexis Alice Aline Alix Amandine Amélie
Anaïs André Andrée Angèle Anne Annie Antoine Antonin Apolline Ariane Armand Arnaud Arthur Aurélie Aurélien Axel
Baptiste Barbara Basile Bastien Béatrice Benjamin Benoît Bernadette Bernard Bertrand Blanche Brigitte Bruno Camille
Capucine Carole Caroline Catherine Cécile Céline Charles Charlotte Chantal Chloé Christian Christine Christophe
Claire Clara Claude Clément Clémence Colette Coralie Corentin Cyril Damien Daniel Danielle David Delphine Denis
Denise Didier Dominique Dorian Édouard Élise Élodie Éloïse Émile Émilie Emma Emmanuel Éric Estelle Étienne
Eugénie Fabien Fabrice Fanny Félix Florence Florian Francis Franck François Françoise Frédéric Gabriel Gabrielle
Gaël Gaëlle Gaspard Geneviève Georges Gérard Germain Gilles Ginette Grégoire Guillaume Gustave Hélène Henri
Hervé Hugo Hugues Inès Irène Isabelle Jacqueline Jacques Jade Jean Jeanne Jérôme Joël Jonathan Joseph Josiane
Jules Julie Julien Juliette Justine Karine Laetitia Laure Laurence Laurent Léa Léo Léon Léonie Lina Lise Louis
Louise Luc Lucas Lucie Lucien Lucille Madeleine Maël Manon Marc Marcel Margaux Marguerite Marie Marine Marion
Martin Martine Mathéo Mathilde Mathieu Maurice Maxime Mélanie Michel Michèle Mireille Monique Morgane Nadine
Nathalie Nathan Nicolas Nicole Noé Noémie Océane Odette Olivier Pascal Pascale Patrice Patricia Patrick Paul
Pauline Philippe Pierre Quentin Raphaël Raymond Régis Rémi Renée Richard Robert Romain Rose Sabine Samuel Sandrine
Sarah Sébastien Serge Simon Simone Solène Sophie Stéphane Stéphanie Suzanne Sylvain Sylvie Théo Thérèse Thibault
Thierry Thomas Timothée Tristan Valentin Valérie Véronique Victor Victoire Vincent Virginie Xavier Yann Yves Yvette
Zoé
"""

_FR_LAST = """
Martin Bernard Thomas Petit Robert Richard Durand Dubois Moreau Laurent Simon Michel Lefebvre Leroy Roux David
Bertrand Morel Fournier Girard Bonnet Dupont Lambert Fontaine Rousseau Vincent Muller Lefèvre Faure André Mercier
Blanc Guérin Boyer Garnier Chevalier François Legrand Gauthier Garcia Perrin Robin Clément Morin Nicolas Henry
Roussel Mathieu Gautier Masson Marchand Duval Denis Dumont Marie Lemaire Noël Meyer Dufour Meunier Brun Blanchard
Giraud Joly Rivière Lucas Brunet Gaillard Barbier Arnaud Martinez Gérard Roche Renard Schmitt Roy Leroux Colin
Vidal Caron Picard Roger Fabre Aubert Lemoine Renaud Dumas Lacroix Olivier Philippe Bourgeois Pierre Benoît Rey
Leclerc Payet Rolland Leclercq Guillaume Lecomte Lopez Jean Dupuy Guillot Hubert Berger Carpentier Sanchez Dupuis
Moulin Louis Deschamps Huet Vasseur Perez Boucher Fleury Royer Klein Jacquet Adam Paris Poirier Marty Aubry
Guyot Carré Charles Renault Charpentier Ménard Maillard Baron Bertin Bailly Hervé Schneider Fernandez
Collet Léger Bouvier Julien Prévost Millet Perrot Daniel Cousin Germain Breton Besson Langlois Rémy
Pelletier Lévêque Perrier Leblanc Barré Lebrun Marchal Weber Mallet Hamon Boulanger Jacob Monnier Michaud
Rodriguez Guichard Gillet Étienne Grondin Poulain Tessier Chevallier Collin Chauvin Bouchet Gay Lemaître
Bénard Humbert Reynaud Antoine Hoarau Perret Barthélemy Cordier Pichon Lejeune Gilbert Lamy Delaunay
Pasquier Carlier Laporte
"""

_EN_FIRST = """
Aaron Abigail Adam Adrian Aiden Alan Albert Alexander Alice Alison Allison Amanda Amber Amelia Amy Andrew Angela
Anna Anthony Arthur Ashley Austin Barbara Benjamin Beth Betty Brandon Brenda Brian Brittany Bruce Bryan Carl Carol
Caroline Catherine Charles Charlotte Chloe Christian Christina Christopher Claire Cynthia Daniel Danielle David
Deborah Debra Dennis Diana Diane Donald Donna Dorothy Douglas Dylan Edward Eleanor Elizabeth Ella Emily Emma Eric
Ethan Eugene Evelyn Frances Frank Gabriel Gary George Georgia Gerald Grace Gregory Hannah Harold Harry Heather
Helen Henry Isaac Isabella Jack Jacob Jacqueline James Jane Janet Jason Jean Jeffrey Jennifer Jeremy Jerry Jessica
Joan Joe John Jonathan Jordan Jose Joseph Joshua Joyce Judith Judy Julia Julie Justin Karen Katherine Kathleen
Kayla Keith Kelly Kenneth Kevin Kimberly Kyle Laura Lauren Lawrence Leah Liam Lily Linda Lisa Logan Lucas Lucy
Madison Margaret Maria Marie Mark Martha Mary Mason Matthew Megan Melissa Mia Michael Michelle Nancy Natalie
Nathan Nicholas Nicole Noah Oliver Olivia Oscar Pamela Patricia Patrick Paul Peter Philip Rachel Ralph Raymond
Rebecca Richard Robert Roger Ronald Rose Russell Ruth Ryan Samantha Samuel Sandra Sarah Scott Sean Sharon Shirley
Sophia Sophie Stephanie Stephen Steven Susan Teresa Terry Thomas Timothy Tyler Victoria Vincent Walter Wayne
William Zachary Zoe
"""

_EN_LAST = """
Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Thomas Moore Jackson White Harris Martin
Thompson Wood Lewis Walker Robinson Clarke Hall Allen Young King Wright Scott Green Baker Adams Nelson Hill
Campbell Mitchell Roberts Carter Phillips Evans Turner Parker Collins Edwards Stewart Morris Murphy Cook Rogers
Morgan Cooper Peterson Reed Bailey Bell Kelly Howard Ward Cox Richardson Watson Brooks Wright Bennett Gray Hughes
Price Sanders Myers Long Ross Foster Powell Jenkins Perry Russell Sullivan Butler Barnes Fisher Henderson Coleman
Simmons Patterson Jordan Reynolds Hamilton Graham Wallace Woods Cole West Owens Marshall Harrison Gibson
Ellis Stevens Murray Ford Shaw Gordon Burns Holmes Palmer Black Robertson Dixon Hunt Mills Warren Knight Grant
Webb Tucker Porter Hunter Hicks Crawford Boyd Mason Kennedy Warner Rice Fletcher Lane Chapman Spencer Hart
Armstrong Ferguson Stone Hawkins Dunn Perkins Hudson Spencer Gardner Stephens Payne Pierce Berry Matthews Arnold
Wagner Willis Ray Watkins Olson Carroll Duncan Snyder Lawrence Riley Austin Elliott Cunningham Bradley Lane
Andrews Ruiz Harper Fox Riley Armstrong Carpenter Weaver Greene Lawson Fields Gilbert Burton Webster Hopkins
Barker Atkinson Davidson Griffiths Lloyd Morrison Newman Osborne Pearson Quinn Russell Saunders Sutton Todd
Underwood Vaughan Walsh Watts Wheeler Whitehead Wilkinson Yates
"""

# City, postcode: prefectures and large towns across France (overseas included).
_FR_CITIES = """
Paris 75011|Marseille 13001|Lyon 69003|Toulouse 31000|Nice 06000|Nantes 44000|Montpellier 34000|Strasbourg 67000
|Bordeaux 33000|Lille 59000|Rennes 35000|Reims 51100|Toulon 83000|Saint-Étienne 42000|Le Havre 76600|Grenoble 38000
|Dijon 21000|Angers 49000|Villeurbanne 69100|Saint-Denis 97400|Nîmes 30000|Clermont-Ferrand 63000|Le Mans 72000
|Aix-en-Provence 13100|Brest 29200|Tours 37000|Amiens 80000|Limoges 87000|Annecy 74000|Perpignan 66000
|Boulogne-Billancourt 92100|Metz 57000|Besançon 25000|Orléans 45000|Rouen 76000|Mulhouse 68100|Caen 14000
|Nancy 54000|Argenteuil 95100|Montreuil 93100|Roubaix 59100|Tourcoing 59200|Avignon 84000|Nanterre 92000
|Créteil 94000|Poitiers 86000|Versailles 78000|Pau 64000|Courbevoie 92400|Vitry-sur-Seine 94400|Colombes 92700
|Aulnay-sous-Bois 93600|Asnières-sur-Seine 92600|La Rochelle 17000|Rueil-Malmaison 92500|Champigny-sur-Marne 94500
|Antibes 06600|Saint-Maur-des-Fossés 94100|Cannes 06400|Calais 62100|Béziers 34500|Colmar 68000|Bourges 18000
|Drancy 93700|Mérignac 33700|Saint-Nazaire 44600|Ajaccio 20000|Issy-les-Moulineaux 92130|Noisy-le-Grand 93160
|Évry 91000|Quimper 29000|Valence 26000|Troyes 10000|Niort 79000|Chambéry 73000|Lorient 56100|Cergy 95000
|Villeneuve-d'Ascq 59650|Sarcelles 95200|Pessac 33600|Vannes 56000|Cayenne 97300|Fort-de-France 97200
|Les Abymes 97139|Bastia 20200|Laval 53000|Belfort 90000|Arles 13200|Saint-Quentin 02100|Beauvais 60000
|Cholet 49300|Saint-Malo 35400|Chartres 28000|Évreux 27000|Châteauroux 36000|Carcassonne 11000|Angoulême 16000
|Blois 41000|Brive-la-Gaillarde 19100|Albi 81000|Tarbes 65000|Bayonne 64100|Montauban 82000|Agen 47000
|Périgueux 24000|Auxerre 89000|Nevers 58000|Mâcon 71000|Charleville-Mézières 08000|Épinal 88000|Gap 05000
|Digne-les-Bains 04000|Rodez 12000|Cahors 46000|Mende 48000|Aurillac 15000|Le Puy-en-Velay 43000|Guéret 23000
|Tulle 19000|Foix 09000|Auch 32000|Mont-de-Marsan 40000|Lons-le-Saunier 39000|Vesoul 70000|Bar-le-Duc 55000
|Chaumont 52000|Alençon 61000|Saint-Lô 50000|Saint-Brieuc 22000|La Roche-sur-Yon 85000|Mamoudzou 97600
"""

_EN_CITIES = """
London EC1A 1BB|Manchester M1 1AE|Birmingham B1 1BB|Leeds LS1 1UR|Glasgow G1 1XQ|Liverpool L1 8JQ|Bristol BS1 4DJ
|Sheffield S1 2HE|Edinburgh EH1 1YZ|Cardiff CF10 1EP|Leicester LE1 5WW|Coventry CV1 5RW|Bradford BD1 1HY
|Belfast BT1 5GS|Nottingham NG1 5FW|Southampton SO14 7DW|Brighton BN1 1UG|Oxford OX1 1BX|Cambridge CB2 1TN
|York YO1 7HH|Boston 02108|New York 10001|Chicago 60601|San Francisco 94103|Seattle 98101|Austin 78701
|Denver 80202|Portland 97201|Atlanta 30303|Miami 33130|Philadelphia 19103|Phoenix 85004|Dallas 75201
|Houston 77002|San Diego 92101|Minneapolis 55401|Detroit 48226|Baltimore 21201|Nashville 37203|Pittsburgh 15222
|Toronto M5H 2N2|Vancouver V6B 1A1|Montreal H2Y 1C6|Ottawa K1P 1J1|Calgary T2P 1J9|Dublin D02 X285
|Sydney 2000|Melbourne 3000|Brisbane 4000|Perth 6000|Auckland 1010|Wellington 6011
"""

_FR_STREETS = """
de la République|Victor Hugo|de la Paix|des Lilas|du Moulin|de l'Église|Jean Jaurès|Pasteur|de la Gare
|des Écoles|du Château|Gambetta|de Verdun|Nationale|des Tilleuls|du Stade|de la Mairie|des Acacias|du Général
de Gaulle|Jules Ferry|des Roses|du Port|de la Fontaine|des Peupliers|Voltaire|de la Liberté|des Vignes
|du Marché|de Bretagne|des Cerisiers|Émile Zola|du Pont|de la Forêt|des Champs|Saint-Michel|de Provence
|des Marronniers|de la Source|Louis Pasteur|du Soleil|de Paris|des Jardins|du Lac|de la Croix|Carnot
|Anatole France|des Platanes|du Centre|des Bleuets|de Lorraine|des Chênes|de la Poste|du Parc|Condorcet
"""

_FR_STREET_TYPES = "rue|avenue|boulevard|allée|impasse|chemin|place|route|quai|square"

_EN_STREETS = """
Main|Oak|Maple|Cedar|Elm|Pine|Church|High|Station|Park|Victoria|Green|Manor|Mill|School|King|Queen|North|South
|West|Hill|Lake|River|Spring|Chestnut|Walnut|Willow|Birch|Cherry|Highland|Sunset|Washington|Lincoln|Jefferson
|Franklin|Madison|Jackson|Market|Bridge|Castle|Orchard|Meadow|Forest|Garden|Grove|Ash|Beech|Holly|Rose|Albert
"""

_EN_STREET_TYPES = "Street|Road|Avenue|Lane|Drive|Close|Way|Court|Place|Crescent"

_FR_COMPANY_WORDS = "Atelier|Boulangerie|Cabinet|Conseil|Garage|Librairie|Maison|Société|Studio|Transports"


def _split(text: str, separator: str | None = None) -> tuple[str, ...]:
    parts = text.replace("\n", " ").split(separator)
    return tuple(dict.fromkeys(part.strip() for part in parts if part.strip()))


@dataclass(frozen=True)
class Pool:
    """One locale's (or both locales') fake values."""

    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    cities: tuple[str, ...]
    postcodes: tuple[str, ...]  # the postcode of each city, same order
    streets: tuple[str, ...]  # "rue des Lilas", "Oak Street": no number


def _cities(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names, codes = [], []
    for entry in _split(text, "|"):
        words = entry.split()
        # The postcode is the last word, or the last two for British and Canadian ones ("EC1A 1BB").
        split = -2 if len(words) > 2 and words[-2][:1].isalpha() and any(c.isdigit() for c in words[-2]) else -1
        names.append(" ".join(words[:split]))
        codes.append(" ".join(words[split:]))
    return tuple(names), tuple(codes)


def _streets(names: str, types: str, french: bool) -> tuple[str, ...]:
    kinds = _split(types, "|")
    return tuple(f"{kinds[index % len(kinds)]} {name}" if french else f"{name} {kinds[index % len(kinds)]}"
                 for index, name in enumerate(_split(names, "|")))


def _pool(locale: str) -> Pool:
    fr_cities, fr_codes = _cities(_FR_CITIES)
    en_cities, en_codes = _cities(_EN_CITIES)
    fr = Pool(_split(_FR_FIRST), _split(_FR_LAST), fr_cities, fr_codes,
              _streets(_FR_STREETS, _FR_STREET_TYPES, french=True))
    en = Pool(_split(_EN_FIRST), _split(_EN_LAST), en_cities, en_codes,
              _streets(_EN_STREETS, _EN_STREET_TYPES, french=False))
    if locale == "fr":
        return fr
    if locale == "en":
        return en
    return Pool(fr.first_names + en.first_names, fr.last_names + en.last_names, fr.cities + en.cities,
                fr.postcodes + en.postcodes, fr.streets + en.streets)


POOLS = {locale: _pool(locale) for locale in LOCALES}
